//! How the values of the file that are more than strings and numbers are read: listeners'
//! addresses, socket modes, the store's and the relay's URLs, the pass-through target. Each
//! refusal says what was expected.

use super::{Endpoint, Relay};
use serde::Deserialize;
use std::net::SocketAddr;

/// `store.url`: a PostgreSQL URL, or empty for the embedded store.
pub(super) fn database_url<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<crate::store::Database>, D::Error> {
    let text = String::deserialize(deserializer)?;
    if text.trim().is_empty() {
        return Ok(None);
    }
    crate::store::Database::parse(&text)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

/// A mail listener's endpoint, or empty for none.
pub(super) fn listen_address<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Endpoint>, D::Error> {
    let text = String::deserialize(deserializer)?;
    match text.trim() {
        "" => Ok(None),
        address => Endpoint::parse(address)
            .map(Some)
            .map_err(serde::de::Error::custom),
    }
}

/// `"0660"`: file permissions in octal.
pub(super) fn octal_mode<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<u32, D::Error> {
    let text = String::deserialize(deserializer)?;
    u32::from_str_radix(text.trim().trim_start_matches("0o"), 8)
        .ok()
        .filter(|mode| *mode <= 0o777)
        .ok_or_else(|| {
            serde::de::Error::custom(format!("{text:?} is not a mode in octal, such as \"0660\""))
        })
}

/// `IP:port` of the HTTP listener, or empty for none.
pub(super) fn http_address<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<SocketAddr>, D::Error> {
    let text = String::deserialize(deserializer)?;
    match text.trim() {
        "" => Ok(None),
        address => address.parse().map(Some).map_err(|_| {
            serde::de::Error::custom(format!("{text:?} is not IP:port, nor empty for off"))
        }),
    }
}

/// `http.public_url`: an http(s) URL with a host and nothing after its path, or empty for
/// none. Links are made by appending to its path, so it is kept without a trailing slash.
pub(super) fn public_url<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<url::Url>, D::Error> {
    use serde::de::Error;
    let text = String::deserialize(deserializer)?;
    let value = text.trim().trim_end_matches('/');
    if value.is_empty() {
        return Ok(None);
    }
    let url = url::Url::parse(value).map_err(|e| D::Error::custom(format!("{text:?}: {e}")))?;
    let web = matches!(url.scheme(), "http" | "https") && url.host().is_some();
    if !web || url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(D::Error::custom(format!(
            "{text:?} is not where browsers reach this listener: http(s)://host[:port][/path], \
             without query, fragment or credentials"
        )));
    }
    Ok(Some(url))
}

/// A language tag (BCP 47) of a language imipd writes mail in.
pub(super) fn language<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<crate::wording::Language, D::Error> {
    let text = String::deserialize(deserializer)?;
    crate::wording::Language::parse(&text).ok_or_else(|| {
        let known: Vec<&str> = crate::wording::Language::ALL
            .iter()
            .map(|l| l.tag())
            .collect();
        serde::de::Error::custom(format!(
            "{text:?} is no language imipd writes mail in: {}",
            known.join(", ")
        ))
    })
}

/// A table by language tag (`[templates.language.de]`), each tag one imipd writes mail in.
pub(super) fn by_language<'de, D: serde::Deserializer<'de>, T: serde::Deserialize<'de>>(
    deserializer: D,
) -> Result<std::collections::BTreeMap<crate::wording::Language, T>, D::Error> {
    let by_tag = std::collections::BTreeMap::<String, T>::deserialize(deserializer)?;
    by_tag
        .into_iter()
        .map(|(tag, value)| {
            let language = language(serde::de::value::StringDeserializer::<D::Error>::new(tag))?;
            Ok((language, value))
        })
        .collect()
}

/// The same, for a key that may be left out.
pub(super) fn some_language<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<crate::wording::Language>, D::Error> {
    language(deserializer).map(Some)
}

/// `inbound.forward`: `lmtp://host:port` or `lmtp+unix:/path`, or empty for none.
pub(super) fn forward_target<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Endpoint>, D::Error> {
    use serde::de::Error;
    let text = String::deserialize(deserializer)?;
    let value = text.trim();
    if value.is_empty() {
        return Ok(None);
    }
    if let Some(path) = value.strip_prefix("lmtp+unix:") {
        return Endpoint::parse(&format!("unix:{path}"))
            .map(Some)
            .map_err(Error::custom);
    }
    let url = url::Url::parse(value).map_err(|e| {
        Error::custom(format!(
            "{value:?} is not lmtp://host:port nor lmtp+unix:/path ({e})"
        ))
    })?;
    if url.scheme() != "lmtp" {
        return Err(Error::custom(format!(
            "{value:?}: use lmtp://host:port or lmtp+unix:/path"
        )));
    }
    let host = url
        .host_str()
        .ok_or_else(|| Error::custom(format!("{value:?} names no host")))?;
    let port = url
        .port()
        .ok_or_else(|| Error::custom(format!("{value:?} names no port")))?;
    use std::net::ToSocketAddrs;
    (host.trim_matches(['[', ']']), port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .map(|a| Some(Endpoint::Tcp(a)))
        .ok_or_else(|| Error::custom(format!("{host:?} does not resolve")))
}

/// `outbound.relay`: an SMTP URL, or empty for none.
pub(super) fn relay_url<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Relay>, D::Error> {
    let text = String::deserialize(deserializer)?;
    if text.trim().is_empty() {
        return Ok(None);
    }
    Relay::parse(&text)
        .map(Some)
        .map_err(serde::de::Error::custom)
}
