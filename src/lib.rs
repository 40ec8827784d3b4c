//! imipd: a calendar scheduling gateway for mail systems (iMIP, RFC 6047).

pub mod config;
pub mod conformance;
pub mod itip;
pub mod store;
