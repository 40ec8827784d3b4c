//! Where the shared store is: a PostgreSQL connection URL, parsed at the configuration's edge.

use rustls_pki_types::CertificateDer;

/// A PostgreSQL connection URL, parsed; shown without its password.
#[derive(Clone)]
pub struct Database {
    /// What the driver connects with.
    pub connect: tokio_postgres::Config,
    text: String,
    /// Roots the server's certificate is checked against with `sslmode=require` (none: the
    /// public ones).
    roots: Vec<CertificateDer<'static>>,
}

impl Database {
    /// Parses `postgres://user:password@host:port/db?options` (or the `key=value` form).
    pub fn parse(text: &str) -> Result<Database, String> {
        let text = text.trim();
        let connect: tokio_postgres::Config = text
            .parse()
            .map_err(|e| format!("not a PostgreSQL URL ({e}): postgres://user@host/database"))?;
        if connect.get_dbname().is_none() {
            return Err("names no database: postgres://user@host/database".into());
        }
        Ok(Database {
            connect,
            text: text.to_string(),
            roots: Vec::new(),
        })
    }

    /// How imipd's sessions connect: within 5 s or not at all; named `imipd` in
    /// `pg_stat_activity`; and a transaction left open ends after a minute, so that the locks
    /// of a host that died (its connection not yet noticed as gone, which TCP alone takes hours
    /// to do) hold up the other hosts for a minute at most. imipd's own transactions are one
    /// batch each and never wait on their client.
    pub fn session(&self) -> tokio_postgres::Config {
        self.session_ending_idle_after(std::time::Duration::from_secs(60))
    }

    /// A session whose transactions left open end after `idle` (tests shorten the minute).
    pub fn session_ending_idle_after(&self, idle: std::time::Duration) -> tokio_postgres::Config {
        let mut session = self.connect.clone();
        if session.get_connect_timeout().is_none() {
            session.connect_timeout(std::time::Duration::from_secs(5));
        }
        session.application_name("imipd");
        session.keepalives_idle(std::time::Duration::from_secs(60));
        let options = format!(
            "{} -c idle_in_transaction_session_timeout={}",
            session.get_options().unwrap_or_default(),
            idle.as_millis()
        );
        session.options(options.trim());
        session
    }

    /// Trusts these certificate authorities (`store.ca_file`) instead of the public ones.
    pub fn with_roots(mut self, roots: Vec<CertificateDer<'static>>) -> Database {
        self.roots = roots;
        self
    }

    /// With `sslmode=require`, how the connection is encrypted: TLS (rustls, ring) with the
    /// server's certificate checked for its host name; otherwise none (a local socket, or a
    /// network the operator trusts).
    pub fn tls(&self) -> Option<rustls::ClientConfig> {
        if self.connect.get_ssl_mode() != tokio_postgres::config::SslMode::Require {
            return None;
        }
        let mut roots = rustls::RootCertStore::empty();
        match self.roots.is_empty() {
            true => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
            false => {
                let (_added, _ignored) = roots.add_parsable_certificates(self.roots.clone());
            }
        }
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .ok()
            .map(|b| b.with_root_certificates(roots).with_no_client_auth())
    }

    /// The hosts reached over the network in plain text: every host but local sockets and
    /// loopback, unless `sslmode=require`. tokio-postgres treats `prefer` (the default) as
    /// `disable` when given no TLS, unlike libpq, so this is what an operator may not expect.
    pub fn unencrypted_hosts(&self) -> Vec<String> {
        if self.connect.get_ssl_mode() == tokio_postgres::config::SslMode::Require {
            return Vec::new();
        }
        self.connect
            .get_hosts()
            .iter()
            .filter_map(|h| match h {
                tokio_postgres::config::Host::Tcp(name) => Some(name),
                tokio_postgres::config::Host::Unix(_) => None,
            })
            .filter(|name| {
                let bare = name.trim_matches(['[', ']']);
                !(bare.eq_ignore_ascii_case("localhost")
                    || bare
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback()))
            })
            .cloned()
            .collect()
    }

    /// The database's host, port and name, for logs and messages.
    pub fn describe(&self) -> String {
        let hosts: Vec<String> = self
            .connect
            .get_hosts()
            .iter()
            .map(|h| match h {
                tokio_postgres::config::Host::Tcp(name) => name.clone(),
                tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
            })
            .collect();
        let port = self.connect.get_ports().first().copied().unwrap_or(5432);
        format!(
            "{}:{port}/{}",
            hosts.join(","),
            self.connect.get_dbname().unwrap_or_default()
        )
    }
}

impl PartialEq for Database {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Database({})", self.describe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_over_the_network_is_found() {
        let hosts = |url: &str| Database::parse(url).unwrap().unencrypted_hosts();
        assert_eq!(
            hosts("postgres://imipd@db.example.com/imipd"),
            ["db.example.com"]
        );
        assert_eq!(
            hosts("postgres://imipd@db.example.com/imipd?sslmode=prefer"),
            ["db.example.com"]
        );
        assert!(hosts("postgres://imipd@db.example.com/imipd?sslmode=require").is_empty());
        assert!(hosts("postgres://imipd@127.0.0.1:5433/imipd").is_empty());
        assert!(hosts("postgres://imipd@localhost/imipd").is_empty());
        assert!(hosts("host=/run/postgresql user=imipd dbname=imipd").is_empty());
    }

    #[test]
    fn parsed_and_shown_without_the_password() {
        let url = Database::parse("postgres://imipd:s3cret@db.example.com:5433/calendars").unwrap();
        assert_eq!(url.describe(), "db.example.com:5433/calendars");
        assert!(!format!("{url:?}").contains("s3cret"));
        assert_eq!(url.connect.get_password(), Some(&b"s3cret"[..]));
        let sockets = Database::parse("host=/run/postgresql dbname=imipd user=imipd").unwrap();
        assert_eq!(sockets.describe(), "/run/postgresql:5432/imipd");
        let socket_url = Database::parse("postgres://imipd@%2Frun%2Fpostgresql/imipd").unwrap();
        assert_eq!(socket_url.describe(), "/run/postgresql:5432/imipd");
        assert!(socket_url.tls().is_none());
        let tls = Database::parse("postgres://imipd@db.example.com/imipd?sslmode=require");
        assert!(tls.unwrap().tls().is_some());
        for bad in [
            "postgres://db.example.com",
            "mysql://x/y",
            "postgres://h:notaport/db",
        ] {
            assert!(Database::parse(bad).is_err(), "{bad}");
        }
    }
}
