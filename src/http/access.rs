//! Who a request comes from: Basic credentials of an account (with the back-off of
//! `auth`), or the admin Bearer token; and the extractors that give handlers the authorized
//! account (`Authorized`) or admit only the admin (`Admin`).

use super::error::Denied;
use super::{Api, auth, serve};
use crate::gateway::Gateway;
use axum::extract::{Extension, FromRequestParts, Path};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use std::net::IpAddr;
use std::sync::Arc;

/// The account a request may reach: the `{account}` of its path, by its canonical name,
/// when the credentials are that account's or the admin's.
pub(crate) struct Authorized(pub String);

impl FromRequestParts<Arc<Api>> for Authorized {
    type Rejection = Denied;

    async fn from_request_parts(parts: &mut Parts, api: &Arc<Api>) -> Result<Self, Denied> {
        let Ok(Path(params)) = Path::<Vec<(String, String)>>::from_request_parts(parts, api).await
        else {
            return Err(Denied::Status(400, "the path names no account".into()));
        };
        let Some((_, account)) = params.iter().find(|(key, _)| key == "account") else {
            return Err(Denied::Status(400, "the path names no account".into()));
        };
        let peer = peer_of(parts);
        authorize(api, &parts.headers, peer, account)
            .await
            .map(Authorized)
    }
}

/// A request with the admin Bearer token.
pub(crate) struct Admin;

impl FromRequestParts<Arc<Api>> for Admin {
    type Rejection = Denied;

    async fn from_request_parts(parts: &mut Parts, api: &Arc<Api>) -> Result<Self, Denied> {
        admin(api, &parts.headers, peer_of(parts)).map(|()| Admin)
    }
}

/// The peer of a request, when it came through the listener.
fn peer_of(parts: &Parts) -> Option<IpAddr> {
    parts
        .extensions
        .get::<serve::Peer>()
        .map(|serve::Peer(address)| address.ip())
}

/// The peer's address, when the request came through the listener.
pub(crate) fn peer_ip(peer: Option<Extension<serve::Peer>>) -> Option<IpAddr> {
    peer.map(|Extension(serve::Peer(address))| address.ip())
}

/// Basic credentials of the account itself, or the admin Bearer token.
pub(crate) async fn authorize(
    api: &Api,
    headers: &HeaderMap,
    peer: Option<IpAddr>,
    account: &str,
) -> Result<String, Denied> {
    let gateway = &api.gateway;
    let canonical = gateway.account_for(account);
    let (user, password) = match credentials(headers) {
        Some(Credential::Bearer(token)) => {
            return if is_admin(gateway, &token) {
                canonical.ok_or_else(|| Denied::NoAccount(account.to_string()))
            } else {
                api.auth.failed(peer, "admin");
                Err(Denied::Unauthorized)
            };
        }
        Some(Credential::Basic(user, password)) => (user, password),
        None => return Err(Denied::Unauthorized),
    };
    let user_account = basic(api, peer, &user, &password).await?;
    match canonical {
        Some(target) if target == user_account => Ok(target),
        _ => Err(Denied::Forbidden(format!(
            "{} may not reach the calendar of {}",
            crate::escape::printable(&user),
            crate::escape::printable(account)
        ))),
    }
}

/// The account whose Basic credentials a request carries (a calendar client's discovery
/// starts with no account in its URL).
pub(crate) async fn authenticate(
    api: &Api,
    headers: &HeaderMap,
    peer: Option<IpAddr>,
) -> Result<String, Denied> {
    match credentials(headers) {
        Some(Credential::Basic(user, password)) => basic(api, peer, &user, &password).await,
        _ => Err(Denied::Unauthorized),
    }
}

/// Checks an account's password (with the back-off); the account's name when it is right.
async fn basic(
    api: &Api,
    peer: Option<IpAddr>,
    user: &str,
    password: &str,
) -> Result<String, Denied> {
    let gateway = &api.gateway;
    let user_account = gateway.account_for(user);
    let config = gateway.config();
    let hash = user_account
        .as_ref()
        .and_then(|a| config.accounts.get(a))
        .map(|a| a.password_hash.as_str());
    let known = user_account.as_deref().zip(hash);
    match api.auth.check(peer, user, known, password).await {
        auth::Checked::Valid => user_account.ok_or(Denied::Unauthorized),
        auth::Checked::Invalid => Err(Denied::Unauthorized),
        auth::Checked::SlowDown(wait) => Err(Denied::SlowDown(wait)),
    }
}

/// What the Authorization header carries (the `headers` crate reads it).
enum Credential {
    Bearer(String),
    Basic(String, String),
}

fn credentials(headers: &HeaderMap) -> Option<Credential> {
    use headers::authorization::{Basic, Bearer};
    use headers::{Authorization, HeaderMapExt};
    if let Some(Authorization(bearer)) = headers.typed_get::<Authorization<Bearer>>() {
        return Some(Credential::Bearer(bearer.token().to_string()));
    }
    let Authorization(basic) = headers.typed_get::<Authorization<Basic>>()?;
    Some(Credential::Basic(
        basic.username().to_string(),
        basic.password().to_string(),
    ))
}

/// True for the configured admin token (never for an empty one).
fn is_admin(gateway: &Gateway, token: &str) -> bool {
    let admin = &gateway.config().http.admin_token;
    !admin.is_empty()
        && bool::from(subtle::ConstantTimeEq::ct_eq(
            token.as_bytes(),
            admin.as_bytes(),
        ))
}

/// The admin Bearer token, for routes that see every account.
pub(crate) fn admin(api: &Api, headers: &HeaderMap, peer: Option<IpAddr>) -> Result<(), Denied> {
    if api.gateway.config().http.admin_token.is_empty() {
        return Err(Denied::Status(
            403,
            "this needs http.admin_token to be set".into(),
        ));
    }
    if let Some(wait) = peer.and_then(|p| api.auth.waiting(p)) {
        return Err(Denied::SlowDown(wait));
    }
    match credentials(headers) {
        Some(Credential::Bearer(token)) if is_admin(&api.gateway, &token) => Ok(()),
        Some(Credential::Bearer(_)) => {
            api.auth.failed(peer, "admin");
            Err(Denied::WrongToken)
        }
        Some(_) => {
            api.auth.failed(peer, "admin");
            Err(Denied::Unauthorized)
        }
        None => Err(Denied::Unauthorized),
    }
}
