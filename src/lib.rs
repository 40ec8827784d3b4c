//! imipd: a calendar scheduling gateway for mail systems (iMIP, RFC 6047).

pub mod backup;
pub mod budget;
pub mod config;
pub mod conformance;
pub mod correspondents;
pub mod daemon;
pub mod escape;
pub mod expiry;
pub mod fuzz;
pub mod gateway;
pub mod http;
pub mod inbound;
pub mod itip;
pub mod listener;
pub mod loadgen;
pub mod mailbox;
pub mod metrics;
pub mod mime;
pub mod outbound;
pub mod quota;
pub mod rsvp;
pub mod store;
pub mod tags;
pub mod trace;
pub mod wording;
pub mod writes;
