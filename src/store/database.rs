//! Where the shared store is: a PostgreSQL connection URL, parsed at the configuration's edge.

/// A PostgreSQL connection URL, parsed; shown without its password.
#[derive(Clone)]
pub struct Database {
    /// What the driver connects with.
    pub connect: tokio_postgres::Config,
    text: String,
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
        })
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
    fn parsed_and_shown_without_the_password() {
        let url = Database::parse("postgres://imipd:s3cret@db.example.com:5433/calendars").unwrap();
        assert_eq!(url.describe(), "db.example.com:5433/calendars");
        assert!(!format!("{url:?}").contains("s3cret"));
        assert_eq!(url.connect.get_password(), Some(&b"s3cret"[..]));
        let sockets = Database::parse("host=/run/postgresql dbname=imipd user=imipd").unwrap();
        assert_eq!(sockets.describe(), "/run/postgresql:5432/imipd");
        for bad in [
            "postgres://db.example.com",
            "mysql://x/y",
            "postgres://h:notaport/db",
        ] {
            assert!(Database::parse(bad).is_err(), "{bad}");
        }
    }
}
