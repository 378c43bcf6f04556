//! Ticket authentication: the client sends a shared ticket in AUTHENTICATE.
//!
//! The CHALLENGE is empty; the ticket is compared with the principal's in constant time.
//! What it does not do: dynamic tickets (a procedure checks them).

use subtle::ConstantTimeEq;

use crate::message::Dict;

use super::super::config::TicketSecret;
use super::{AuthInfo, Challenged, Found, Inner, Step};

pub(super) struct Expect {
    info: AuthInfo,
    ticket: String,
}

pub(super) fn start(found: Found<'_, TicketSecret>) -> Step {
    Step::Challenge {
        method: "ticket".to_owned(),
        extra: Dict::new(),
        state: Challenged(Box::new(Inner::Ticket(Expect {
            info: found.info,
            ticket: found.principal.secret.ticket.clone(),
        }))),
    }
}

impl Expect {
    pub(super) fn verify(self, signature: &str) -> Step {
        if bool::from(signature.as_bytes().ct_eq(self.ticket.as_bytes())) {
            Step::Welcome(self.info)
        } else {
            Step::failed("invalid ticket")
        }
    }
}
