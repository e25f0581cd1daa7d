//! The client side of digest authentication for one registration or one call: remembers the
//! challenges it was given, answers them on every later request (with a fresh nonce count), and
//! decides whether a new 401/407 is worth another try.

use super::auth::{self, Challenge, NonceCounter};
use super::message::Message;

#[derive(Debug)]
pub struct ClientAuth {
    user: String,
    password: String,
    /// (is Proxy-Authenticate, challenge, its nonce count)
    challenges: Vec<(bool, Challenge, NonceCounter)>,
}

/// Why a challenge cannot be answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthFailure {
    /// No password is configured for the account.
    NoCredentials,
    /// The server rejected the credentials we sent for this very nonce: wrong user or password.
    Rejected,
    /// The 401/407 had no digest challenge we can answer.
    Unsupported,
}

impl AuthFailure {
    pub fn describe(&self) -> &'static str {
        match self {
            AuthFailure::NoCredentials => "authentication required but no password is set",
            AuthFailure::Rejected => "authentication failed: check user name and password",
            AuthFailure::Unsupported => {
                "server asked for an authentication scheme we do not support"
            }
        }
    }
}

impl ClientAuth {
    pub fn new(user: &str, password: &str) -> ClientAuth {
        ClientAuth {
            user: user.to_string(),
            password: password.to_string(),
            challenges: Vec::new(),
        }
    }

    /// Takes the challenges of a 401/407. Ok means: send the request again with `apply`.
    pub fn on_challenge(&mut self, resp: &Message) -> Result<(), AuthFailure> {
        if self.password.is_empty() {
            return Err(AuthFailure::NoCredentials);
        }
        let mut fresh = Vec::new();
        for (name, proxy) in [("WWW-Authenticate", false), ("Proxy-Authenticate", true)] {
            if let Some(ch) = auth::best_challenge(resp.header_values(name)) {
                fresh.push((proxy, ch));
            }
        }
        if fresh.is_empty() {
            return Err(AuthFailure::Unsupported);
        }
        for (proxy, ch) in &fresh {
            // The same realm and nonce again, not marked stale: our answer was wrong.
            let repeated = self
                .challenges
                .iter()
                .any(|(p, old, _)| p == proxy && old.realm == ch.realm && old.nonce == ch.nonce);
            if repeated && !ch.stale {
                return Err(AuthFailure::Rejected);
            }
        }
        for (proxy, ch) in fresh {
            self.challenges
                .retain(|(p, old, _)| !(*p == proxy && old.realm == ch.realm));
            self.challenges.push((proxy, ch, NonceCounter::default()));
        }
        Ok(())
    }

    /// Adds Authorization / Proxy-Authorization headers answering every stored challenge.
    pub fn apply(&mut self, req: &mut Message) {
        req.remove_header("Authorization");
        req.remove_header("Proxy-Authorization");
        let method = req.method().map(|m| m.to_string()).unwrap_or_default();
        let uri = req.request_uri().unwrap_or_default().to_string();
        for (proxy, ch, counter) in &mut self.challenges {
            let nc = counter.next_nc(&ch.nonce);
            let value = auth::authorization(
                ch,
                &self.user,
                &self.password,
                &method,
                &uri,
                &req.body,
                nc,
                &auth::new_cnonce(),
            );
            let name = if *proxy {
                "Proxy-Authorization"
            } else {
                "Authorization"
            };
            req.push_header(name, value);
        }
    }

    pub fn has_challenges(&self) -> bool {
        !self.challenges.is_empty()
    }
}
