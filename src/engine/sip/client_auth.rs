//! The client side of digest authentication for one registration or one call: remembers the
//! challenges it was given, answers them on every later request (with a fresh nonce count), and
//! decides whether a new 401/407 is worth another try.

use super::auth::{self, Challenge, NonceCounter};
use super::message::Message;

#[derive(Debug)]
pub struct ClientAuth {
    user: String,
    password: String,
    /// (is Proxy-Authenticate, challenge, its nonce count, requests answered with it)
    challenges: Vec<(bool, Challenge, NonceCounter, u32)>,
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
            let Some((_, old, _, answered)) = self
                .challenges
                .iter()
                .find(|(p, old, ..)| p == proxy && old.realm == ch.realm)
            else {
                continue;
            };
            // Challenged again for the same realm, not marked stale, and either with the same
            // nonce or right after our first answer to a new one: the credentials are wrong. Most
            // servers hand out a fresh nonce with every challenge, so comparing nonces alone would
            // resend forever. Only a nonce we had used several times may just have expired.
            if !ch.stale && (old.nonce == ch.nonce || *answered == 1) {
                return Err(AuthFailure::Rejected);
            }
        }
        for (proxy, ch) in fresh {
            self.challenges
                .retain(|(p, old, ..)| !(*p == proxy && old.realm == ch.realm));
            self.challenges
                .push((proxy, ch, NonceCounter::default(), 0));
        }
        Ok(())
    }

    /// Adds Authorization / Proxy-Authorization headers answering every stored challenge.
    pub fn apply(&mut self, req: &mut Message) {
        req.remove_header("Authorization");
        req.remove_header("Proxy-Authorization");
        let method = req.method().map(|m| m.to_string()).unwrap_or_default();
        let uri = req.request_uri().unwrap_or_default().to_string();
        for (proxy, ch, counter, answered) in &mut self.challenges {
            *answered = answered.saturating_add(1);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn challenge(nonce: &str, stale: bool) -> Message {
        let stale = if stale { ", stale=true" } else { "" };
        let raw = format!(
            "SIP/2.0 401 Unauthorized\r\nVia: SIP/2.0/UDP 127.0.0.1:5065;branch=z9hG4bKa\r\n\
From: <sip:carol@127.0.0.1>;tag=f\r\nTo: <sip:carol@127.0.0.1>;tag=t\r\nCall-ID: c\r\n\
CSeq: 1 REGISTER\r\nWWW-Authenticate: Digest realm=\"r\", nonce=\"{nonce}\"{stale}\r\n\
Content-Length: 0\r\n\r\n"
        );
        Message::parse(raw.as_bytes()).unwrap()
    }

    fn answer(auth: &mut ClientAuth) {
        let mut req = Message::request(super::super::message::Method::Register, "sip:127.0.0.1");
        auth.apply(&mut req);
        assert!(req.header("Authorization").is_some());
    }

    #[test]
    fn a_fresh_nonce_right_after_our_first_answer_means_wrong_credentials() {
        let mut auth = ClientAuth::new("carol", "bad");
        assert_eq!(auth.on_challenge(&challenge("n1", false)), Ok(()));
        answer(&mut auth);
        assert_eq!(
            auth.on_challenge(&challenge("n2", false)),
            Err(AuthFailure::Rejected)
        );
    }

    #[test]
    fn a_new_nonce_for_a_well_used_one_or_a_stale_one_is_answered() {
        let mut auth = ClientAuth::new("carol", "pw");
        assert_eq!(auth.on_challenge(&challenge("n1", false)), Ok(()));
        answer(&mut auth);
        answer(&mut auth);
        // A refresh met an expired nonce (some servers do not say stale).
        assert_eq!(auth.on_challenge(&challenge("n2", false)), Ok(()));
        answer(&mut auth);
        assert_eq!(auth.on_challenge(&challenge("n3", true)), Ok(()));
    }
}
