//! What one message may cause in one account, decided while its parts are applied: the
//! copies it writes within the account's quota and, for new objects from outside mail, within
//! its sender's hourly allowance; the answers kept for the organizer (one per sender,
//! `limits.max_uninvited`); automatic messages at most one per outside address per
//! `outbound.notify_delay`; and which correspondents it makes known. What it counted goes into
//! the same commit as the parts. Mail from outside and messages from another account here
//! (`outbound::local`) are held to the same quotas.

use crate::gateway::Gateway;
use crate::itip::{self, CalAddress, Calendar};
use crate::quota::{self, Growth, OverQuota};
use crate::store::{Ahead, Change, Count, StoreError, Tally, Usage, Was};
use std::collections::BTreeMap;

/// A tally as the decision read it, and what the message makes it.
#[derive(Debug, Clone, Copy)]
struct Counted {
    read: Option<Count>,
    written: Option<Count>,
}

/// Where a message comes from, for the allowances that differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Mail from outside: new objects count against the sender's hourly allowance.
    Outside,
    /// Another account here: bounded by the recipient's quotas, not by the hourly allowance
    /// (`limits.max_new_per_sender` is for outside senders; an account's own quota already
    /// bounds how many invitations it sends).
    Account,
}

/// One message's allowance in one account.
pub struct Allowance<'a> {
    gateway: &'a Gateway,
    account: &'a str,
    sender: &'a CalAddress,
    origin: Origin,
    /// What was read before the decision (`Store::read_ahead`).
    ahead: &'a Ahead,
    now: i64,
    /// What the account held before the message, read when first needed.
    held: Option<Usage>,
    /// What the message's parts added so far.
    grown: Growth,
    /// Tallies read, and their new state when the message changes them.
    tallies: BTreeMap<(Tally, CalAddress), Counted>,
}

impl<'a> Allowance<'a> {
    /// Nothing allowed or counted yet.
    pub fn new(
        gateway: &'a Gateway,
        account: &'a str,
        (sender, origin): (&'a CalAddress, Origin),
        ahead: &'a Ahead,
    ) -> Self {
        Allowance {
            gateway,
            account,
            sender,
            origin,
            ahead,
            now: gateway.now(),
            held: None,
            grown: Growth::default(),
            tallies: BTreeMap::new(),
        }
    }

    /// A copy a part writes, of `before` bytes (none: a new object) and now `after`: within
    /// the quota, and a new object from outside within its sender's allowance; then counted.
    pub fn copy(
        &mut self,
        before: Option<usize>,
        after: usize,
    ) -> Result<Result<(), OverQuota>, StoreError> {
        let limits = &self.gateway.config().limits;
        let growth = Growth::of_object(before, after);
        let grown = self.grown.and(growth);
        // Only growth is ever refused: most updates need no read of what the account holds.
        if grown.objects > 0 || grown.bytes > 0 {
            let held = match self.held {
                Some(held) => held,
                None => *self.held.insert(self.usage()?),
            };
            if let Err(over) = quota::admits(limits, held, grown) {
                return Ok(Err(over));
            }
        }
        if before.is_none() && self.origin == Origin::Outside {
            let tally = self.read(Tally::NewFrom, self.sender)?;
            match quota::one_more_from(limits, self.sender.as_str(), tally, self.now) {
                Ok(next) => self.write(Tally::NewFrom, self.sender, next),
                Err(over) => return Ok(Err(over)),
            }
        }
        self.grown = self.grown.and(growth);
        Ok(Ok(()))
    }

    /// The changes that keep `proposal` for the organizer of `uid`: the sender's earlier one
    /// of the same method goes; past `limits.max_uninvited` others, nothing is kept.
    pub fn proposal(
        &self,
        uid: &str,
        proposal: &Calendar,
    ) -> Result<Result<Vec<Change>, OverQuota>, StoreError> {
        let limit = self.gateway.config().limits.max_uninvited;
        let method = proposal.method();
        let proposer = itip::proposer(proposal);
        let held = self.gateway.store.proposals(self.account, uid)?;
        // What was counted is checked again at the commit: answers arriving at once must not
        // all find room for one.
        let mut changes = vec![Change::ProposalsKept {
            account: self.account.into(),
            uid: uid.into(),
            count: held.len() as u64,
        }];
        let mut others = 0;
        for (id, text) in held {
            let kept = Calendar::parse(&text).ok();
            let same = kept
                .as_ref()
                .is_some_and(|k| k.method() == method && itip::proposer(k) == proposer);
            if same {
                changes.push(Change::DropProposal {
                    account: self.account.into(),
                    uid: uid.into(),
                    id,
                });
            } else {
                others += 1;
            }
        }
        if others >= limit {
            return Ok(Err(OverQuota::Uninvited(limit)));
        }
        changes.push(Change::Proposal {
            account: self.account.into(),
            uid: uid.into(),
            text: proposal.to_string(),
        });
        Ok(Ok(changes))
    }

    /// True when an automatic message (one the message makes imipd send on its own: a
    /// REFRESH, the answer to one) may go to `to` now: at most one per outside address and
    /// account per `outbound.notify_delay`, so that a forged sender cannot make imipd mail a
    /// victim over and over.
    pub fn echo(&mut self, to: &CalAddress) -> Result<bool, StoreError> {
        let window = self.gateway.config().outbound.notify_delay.as_secs() as i64;
        let last = self.read(Tally::Echo, to)?;
        if last.is_some_and(|last| self.now - last.since < window) {
            return Ok(false);
        }
        let now = Count {
            since: self.now,
            count: 1,
        };
        self.write(Tally::Echo, to, now);
        Ok(true)
    }

    /// True when the account had an object from `address`, or invited or answered it.
    pub fn knows(&mut self, address: &CalAddress) -> Result<bool, StoreError> {
        Ok(self.read(Tally::Known, address)?.is_some())
    }

    /// Records `address` as a correspondent of the account (an organizer whose object it
    /// now holds), unless it is one already.
    pub fn make_known(&mut self, address: &CalAddress) -> Result<(), StoreError> {
        if !self.knows(address)? {
            let first = Count {
                since: self.now,
                count: 1,
            };
            self.write(Tally::Known, address, first);
        }
        Ok(())
    }

    /// The changes that record what the message counted.
    pub fn changes(&self) -> impl Iterator<Item = Change> + '_ {
        let tallies = self
            .tallies
            .iter()
            .filter_map(|((tally, address), counted)| {
                Some(Change::Tally {
                    account: self.account.into(),
                    tally: *tally,
                    address: address.as_str().into(),
                    count: counted.written?,
                    was: Was::Read(counted.read),
                })
            });
        // The quotas the message's growth was admitted under, checked again at its commit:
        // two messages admitted at once must not both land past them.
        let limits = &self.gateway.config().limits;
        tallies.chain(quota::within(limits, self.account, self.grown))
    }

    fn read(&mut self, tally: Tally, address: &CalAddress) -> Result<Option<Count>, StoreError> {
        let key = (tally, address.clone());
        if let Some(counted) = self.tallies.get(&key) {
            return Ok(counted.written.or(counted.read));
        }
        let count = match self.ahead.tally(self.account, tally, address.as_str()) {
            Some(count) => count,
            None => self
                .gateway
                .store
                .tally(self.account, tally, address.as_str())?,
        };
        self.tallies.insert(
            key,
            Counted {
                read: count,
                written: None,
            },
        );
        Ok(count)
    }

    fn usage(&self) -> Result<Usage, StoreError> {
        match self.ahead.usage(self.account) {
            Some(usage) => Ok(usage),
            None => self.gateway.store.usage(self.account),
        }
    }

    /// A tally's new state; it was read first (`read`), and its commit expects what was read.
    fn write(&mut self, tally: Tally, address: &CalAddress, count: Count) {
        if let Some(counted) = self.tallies.get_mut(&(tally, address.clone())) {
            counted.written = Some(count);
        }
    }
}

/// Whom a new object comes from, for consent: its organizer, or (published without one) its
/// sender.
pub fn originator(calendar: &Calendar, sender: &CalAddress) -> CalAddress {
    calendar
        .scheduling()
        .find_map(|c| c.organizer())
        .unwrap_or_else(|| sender.clone())
}
