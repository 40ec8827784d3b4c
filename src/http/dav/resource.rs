//! What a DAV path names: the resources of an account (principal, calendar home, calendars,
//! their objects under the names clients gave them, the schedule inbox and outbox), their
//! hrefs, and where an account's objects are.

use super::error::DavError;
use super::properties::Facts;
use super::{Api, CALENDAR, INBOX, OUTBOX};
use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};

/// What a path segment may hold unencoded.
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'&');

/// What a DAV path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Resource {
    /// `/` or `/dav/`: where discovery starts.
    Root,
    /// `/dav/principals/ACCOUNT/`.
    Principal(String),
    /// `/dav/calendars/ACCOUNT/`.
    Home(String),
    /// `/dav/calendars/ACCOUNT/NAME/`: the default calendar (`calendar`) or another one.
    Calendar(String, String),
    /// `/dav/calendars/ACCOUNT/NAME/MEMBER`.
    Object(String, String, Member),
    /// `/dav/calendars/ACCOUNT/inbox/`: the scheduling messages applied (RFC 6638 2.2).
    Inbox(String),
    /// `/dav/calendars/ACCOUNT/inbox/ID.ics` (ID: the item's id, sealed: see `tags`).
    InboxItem(String, u64),
    /// `/dav/calendars/ACCOUNT/outbox/`: where free/busy is asked (RFC 6638 2.1).
    Outbox(String),
}

/// A calendar object resource: the last segment of its URL, and the UID of the object it
/// stands for. Objects are at `UID.ics` unless a client PUT one under another name; a name
/// nothing stands for has no UID (a PUT's body gives it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Member {
    pub(super) name: String,
    pub(super) uid: Option<String>,
}

impl Member {
    /// As a path names it, before the store says what it stands for.
    pub(super) fn named(name: &str) -> Member {
        Member {
            name: name.to_string(),
            uid: name.strip_suffix(".ics").map(str::to_string),
        }
    }

    /// The object `uid`, under the name a client gave it or `UID.ics`.
    pub(super) fn of(uid: &str, names: &std::collections::BTreeMap<String, String>) -> Member {
        Member {
            name: names
                .get(uid)
                .cloned()
                .unwrap_or_else(|| format!("{uid}.ics")),
            uid: Some(uid.to_string()),
        }
    }

    /// What the name stands for in the account's store: a name a client chose, else
    /// `UID.ics` of an object that has no other name.
    pub(super) fn resolved(
        self,
        api: &Api,
        account: &str,
    ) -> Result<Member, crate::store::StoreError> {
        let store = &api.gateway.store;
        let uid = match store.named(account, &self.name)? {
            Some(uid) => Some(uid),
            None => match self.uid {
                Some(stem) if store.name_of(account, &stem)?.is_none() => Some(stem),
                _ => None,
            },
        };
        Ok(Member { uid, ..self })
    }

    /// The UID, or why there is no object here.
    pub(super) fn uid(&self) -> Result<&str, DavError> {
        self.uid.as_deref().ok_or_else(|| {
            DavError::NotFound(format!(
                "no object {}",
                crate::escape::printable(&self.name)
            ))
        })
    }
}

/// The kinds of resource, by what they are and not whose: what properties apply to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Root,
    Principal,
    Home,
    Calendar,
    Object,
    Inbox,
    InboxItem,
    Outbox,
}

impl Resource {
    pub(super) fn kind(&self) -> Kind {
        match self {
            Resource::Root => Kind::Root,
            Resource::Principal(_) => Kind::Principal,
            Resource::Home(_) => Kind::Home,
            Resource::Calendar(..) => Kind::Calendar,
            Resource::Object(..) => Kind::Object,
            Resource::Inbox(_) => Kind::Inbox,
            Resource::InboxItem(..) => Kind::InboxItem,
            Resource::Outbox(_) => Kind::Outbox,
        }
    }

    /// An object's name resolved in the store (see `Member::resolved`); the others as they are.
    pub(super) fn resolved(self, api: &Api) -> Result<Resource, DavError> {
        match self {
            Resource::Object(a, c, member) => {
                let member = member.resolved(api, &a)?;
                Ok(Resource::Object(a, c, member))
            }
            other => Ok(other),
        }
    }

    pub(super) fn parse(path: &str) -> Option<Resource> {
        let rest = match path.strip_prefix("/dav") {
            Some(rest) => rest,
            None if path == "/" => return Some(Resource::Root),
            None => return None,
        };
        let segments: Vec<String> = rest
            .split('/')
            .filter(|s| !s.is_empty())
            .map(|s| percent_decode_str(s).decode_utf8_lossy().into_owned())
            .collect();
        let parts: Vec<&str> = segments.iter().map(String::as_str).collect();
        Some(match parts.as_slice() {
            [] => Resource::Root,
            ["principals", account] => Resource::Principal(account.to_string()),
            ["calendars", account] => Resource::Home(account.to_string()),
            ["calendars", account, INBOX] => Resource::Inbox(account.to_string()),
            ["calendars", account, INBOX, name] => Resource::InboxItem(
                account.to_string(),
                name.strip_suffix(".ics")?.parse().ok()?,
            ),
            ["calendars", account, OUTBOX] => Resource::Outbox(account.to_string()),
            ["calendars", account, calendar] => {
                Resource::Calendar(account.to_string(), calendar.to_string())
            }
            ["calendars", account, calendar, name] => Resource::Object(
                account.to_string(),
                calendar.to_string(),
                Member::named(name),
            ),
            _ => return None,
        })
    }

    pub(super) fn account(&self) -> Option<&str> {
        match self {
            Resource::Root => None,
            Resource::Principal(a) | Resource::Home(a) | Resource::Calendar(a, _) => Some(a),
            Resource::Object(a, ..) | Resource::InboxItem(a, _) => Some(a),
            Resource::Inbox(a) | Resource::Outbox(a) => Some(a),
        }
    }

    pub(super) fn href(&self) -> String {
        let seg = |s: &str| utf8_percent_encode(s, SEGMENT).to_string();
        match self {
            Resource::Root => "/dav/".into(),
            Resource::Principal(a) => format!("/dav/principals/{}/", seg(a)),
            Resource::Home(a) => format!("/dav/calendars/{}/", seg(a)),
            Resource::Calendar(a, c) => format!("/dav/calendars/{}/{}/", seg(a), seg(c)),
            Resource::Object(a, c, member) => {
                // Pushed piece by piece, not `format!`ted: a listing writes one per object.
                let mut out = String::with_capacity(96);
                out.push_str("/dav/calendars/");
                for (piece, end) in [(a.as_str(), "/"), (c, "/"), (&member.name, "")] {
                    out.extend(utf8_percent_encode(piece, SEGMENT));
                    out.push_str(end);
                }
                out
            }
            Resource::Inbox(a) => format!("/dav/calendars/{}/{INBOX}/", seg(a)),
            Resource::InboxItem(a, id) => format!("/dav/calendars/{}/{INBOX}/{id}.ics", seg(a)),
            Resource::Outbox(a) => format!("/dav/calendars/{}/{OUTBOX}/", seg(a)),
        }
    }

    /// The same resource under the account's canonical name.
    pub(super) fn of(&self, account: &str) -> Resource {
        let a = account.to_string();
        match self {
            Resource::Root => Resource::Root,
            Resource::Principal(_) => Resource::Principal(a),
            Resource::Home(_) => Resource::Home(a),
            Resource::Calendar(_, c) => Resource::Calendar(a, c.clone()),
            Resource::Object(_, c, member) => Resource::Object(a, c.clone(), member.clone()),
            Resource::Inbox(_) => Resource::Inbox(a),
            Resource::InboxItem(_, id) => Resource::InboxItem(a, *id),
            Resource::Outbox(_) => Resource::Outbox(a),
        }
    }
}

/// The further calendars an account has, and where its objects are.
pub(super) struct Layout {
    pub(super) calendars: Vec<String>,
    placements: std::collections::BTreeMap<String, String>,
}

impl Layout {
    pub(super) fn of(api: &Api, account: &str) -> Result<Layout, DavError> {
        let store = &api.gateway.store;
        Ok(Layout {
            calendars: store.calendars(account)?,
            placements: store.placements(account)?.into_iter().collect(),
        })
    }

    pub(super) fn exists(&self, calendar: &str) -> bool {
        calendar == CALENDAR || self.calendars.iter().any(|c| c == calendar)
    }

    /// The calendar an object is (or was last) in.
    pub(super) fn calendar_of(&self, uid: &str) -> &str {
        self.placements
            .get(uid)
            .map(String::as_str)
            .unwrap_or(CALENDAR)
    }
}

/// The UID of the object a path names in a calendar, or why there is none there.
pub(super) fn located<'m>(
    api: &Api,
    account: &str,
    calendar: &str,
    member: &'m Member,
) -> Result<&'m str, DavError> {
    let uid = member.uid()?;
    in_calendar(api, account, calendar, uid)?;
    Ok(uid)
}

/// Refuses an object asked for under a calendar it is not in (it exists only once).
pub(super) fn in_calendar(
    api: &Api,
    account: &str,
    calendar: &str,
    uid: &str,
) -> Result<(), DavError> {
    match Layout::of(api, account)?.calendar_of(uid) == calendar {
        true => Ok(()),
        false => Err(DavError::NotFound(format!(
            "no object {} in {}",
            crate::escape::printable(uid),
            crate::escape::printable(calendar)
        ))),
    }
}

/// The members of a collection, one level down.
pub(super) fn children(
    api: &Api,
    account: &str,
    resource: &Resource,
    facts: &Facts,
) -> Result<Vec<Resource>, DavError> {
    Ok(match resource {
        Resource::Root => vec![Resource::Principal(account.into())],
        Resource::Home(a) => std::iter::once(CALENDAR.to_string())
            .chain(facts.layout.calendars.iter().cloned())
            .map(|c| Resource::Calendar(a.clone(), c))
            .chain([Resource::Inbox(a.clone()), Resource::Outbox(a.clone())])
            .collect(),
        Resource::Inbox(a) => api
            .gateway
            .store
            .inbox_ids(a)?
            .into_iter()
            .map(|(id, _)| Resource::InboxItem(a.clone(), api.gateway.tags.seal(a, id)))
            .collect(),
        Resource::Calendar(a, c) => api
            .gateway
            .store
            .listing(a)?
            .into_iter()
            .filter(|(uid, _)| facts.layout.calendar_of(uid) == c)
            .map(|(uid, _)| Resource::Object(a.clone(), c.clone(), facts.member(&uid)))
            .collect(),
        Resource::Principal(_)
        | Resource::Object(..)
        | Resource::InboxItem(..)
        | Resource::Outbox(_) => Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_hrefs() {
        assert_eq!(Resource::parse("/"), Some(Resource::Root));
        assert_eq!(Resource::parse("/dav"), Some(Resource::Root));
        assert_eq!(
            Resource::parse("/dav/principals/alice@example.com/"),
            Some(Resource::Principal("alice@example.com".into()))
        );
        assert_eq!(
            Resource::parse("/dav/calendars/alice@example.com/calendar/a%2Fb%20c.ics"),
            Some(Resource::Object(
                "alice@example.com".into(),
                CALENDAR.into(),
                Member::named("a/b c.ics")
            ))
        );
        // Any name: what it stands for is the store's to say.
        let other = Resource::parse("/dav/calendars/a/calendar/x.txt");
        assert!(matches!(
            other,
            Some(Resource::Object(_, _, Member { uid: None, .. }))
        ));
        assert_eq!(Resource::parse("/dav/elsewhere"), None);
        let names = [("a/b c".to_string(), "given name".to_string())].into();
        let named = Resource::Object("a".into(), CALENDAR.into(), Member::of("a/b c", &names));
        assert_eq!(named.href(), "/dav/calendars/a/calendar/given%20name");
        let object = Resource::Object(
            "alice@example.com".into(),
            CALENDAR.into(),
            Member::of("a/b c", &Default::default()),
        );
        assert_eq!(
            object.href(),
            "/dav/calendars/alice@example.com/calendar/a%2Fb%20c.ics"
        );
        assert_eq!(Resource::parse(&object.href()), Some(object));
    }

    /// Any resource's href reads back as that resource, whatever its segments hold.
    mod generated {
        use super::*;
        use proptest::prelude::*;

        fn segment() -> impl Strategy<Value = String> {
            proptest::string::string_regex("[^\\x00]{1,24}").unwrap()
        }

        fn resource() -> impl Strategy<Value = Resource> {
            let calendar = || {
                segment().prop_filter("the inbox and outbox are not calendars", |c| {
                    c != INBOX && c != OUTBOX
                })
            };
            prop_oneof![
                segment().prop_map(Resource::Principal),
                segment().prop_map(Resource::Home),
                (segment(), calendar()).prop_map(|(a, c)| Resource::Calendar(a, c)),
                (segment(), calendar(), segment()).prop_map(|(a, c, n)| Resource::Object(
                    a,
                    c,
                    Member::named(&n)
                )),
                segment().prop_map(Resource::Inbox),
                (segment(), any::<u64>()).prop_map(|(a, id)| Resource::InboxItem(a, id)),
                segment().prop_map(Resource::Outbox),
            ]
        }

        proptest! {
            #[test]
            fn hrefs_round_trip(resource in resource()) {
                let href = resource.href();
                prop_assert!(href.parse::<axum::http::Uri>().is_ok(), "{}", href);
                prop_assert_eq!(Resource::parse(&href), Some(resource));
            }
        }
    }
}
