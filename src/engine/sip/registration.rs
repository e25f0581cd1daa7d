//! Registration of one account (RFC 3261 section 10): REGISTER with digest auth, refresh before
//! expiry, 423 Interval Too Brief, retry with back-off, and the Contact corrected from the
//! `received`/`rport` the registrar saw (RFC 3581).
//!
//! This file decides; the user agent builds and sends the requests.

use super::client_auth::ClientAuth;
use super::message::{Contacts, Message};
use super::uri::Uri;
use crate::api::RegistrationState;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Registration {
    pub state: RegistrationState,
    pub call_id: String,
    pub from_tag: String,
    pub cseq: u32,
    /// The lifetime we ask for (raised by a 423).
    pub expires: u32,
    pub auth: ClientAuth,
    /// When to send the next REGISTER (refresh or retry), if one is due.
    pub next_at: Option<Instant>,
    /// Consecutive failures, for the back-off.
    pub failures: u32,
    /// Branch of the REGISTER in flight.
    pub pending: Option<String>,
    /// An old Contact to remove (expires=0) with the next REGISTER after it changed.
    pub stale_contact: Option<String>,
    /// Our address as the registrar saw it (received, rport), once it differs from the local one.
    pub public: Option<(String, u16)>,
    /// The user asked to stop (quit or account off): the next REGISTER has Expires: 0.
    pub unregistering: bool,
    /// Why the REGISTER in flight could not be sent (refused, TLS handshake failed), if it could not.
    pub transport_error: Option<String>,
}

/// What a response (or a timeout) means for the registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegOutcome {
    /// Send a REGISTER again now (answered a challenge, raised the expiry, corrected the Contact).
    Resend,
    Registered {
        expires: u32,
    },
    Unregistered,
    Failed {
        code: Option<u16>,
        reason: String,
    },
    /// A provisional response, or one for a REGISTER we no longer wait for.
    Nothing,
}

/// Refresh a little before the registration runs out (at most 85 % of it, at least 5 s early).
pub fn refresh_delay(expires: u32) -> Duration {
    let e = u64::from(expires.max(10));
    Duration::from_secs((e * 85 / 100).min(e.saturating_sub(5)).max(5))
}

/// Back-off after the `failures`-th failure in a row: 5 s, 10 s, 20 s … capped at 5 minutes.
pub fn retry_delay(failures: u32) -> Duration {
    Duration::from_secs((5u64 << failures.saturating_sub(1).min(6)).min(300))
}

impl Registration {
    pub fn new(expires: u32, auth: ClientAuth) -> Registration {
        Registration {
            state: RegistrationState::Unregistered,
            call_id: format!("{:016x}@dialtone", rand::random::<u64>()),
            from_tag: format!("{:08x}", rand::random::<u32>()),
            cseq: 0,
            expires,
            auth,
            next_at: None,
            failures: 0,
            pending: None,
            stale_contact: None,
            public: None,
            unregistering: false,
            transport_error: None,
        }
    }

    /// A final or provisional response to our REGISTER. `contact` is the Contact we sent.
    pub fn on_response(&mut self, resp: &Message, contact: &Uri, now: Instant) -> RegOutcome {
        let Some(code) = resp.status() else {
            return RegOutcome::Nothing;
        };
        if code < 200 {
            return RegOutcome::Nothing;
        }
        self.pending = None;
        match code {
            200..=299 if self.unregistering => {
                self.state = RegistrationState::Unregistered;
                self.next_at = None;
                RegOutcome::Unregistered
            }
            200..=299 => {
                // A NAT (or a wrong guess of our address) between us and the registrar: the
                // registrar tells us where our packets came from; register that instead.
                if let Ok(via) = resp.top_via()
                    && let (Some(host), Some(port)) =
                        (via.received().map(str::to_string), via.rport())
                {
                    let seen = (host, port);
                    let used = (contact.host.clone(), contact.port.unwrap_or(5060));
                    // Over TCP the rport is our connection's ephemeral source port, never the
                    // one we listen on: only a different address means a NAT (registering that
                    // port would make us unreachable once the connection closes). Over TLS we
                    // accept no connections, so the connection itself is the only way back to
                    // us: register it (the engine keeps it open with keep-alives).
                    let listening = via.transport.eq_ignore_ascii_case("TCP");
                    let nat = seen.0 != used.0 || (!listening && seen.1 != used.1);
                    if nat && self.public.as_ref() != Some(&seen) {
                        self.public = Some(seen);
                        self.stale_contact = Some(contact.to_string());
                        return RegOutcome::Resend;
                    }
                }
                let expires = granted_expiry(resp, contact).unwrap_or(self.expires);
                if expires == 0 {
                    self.fail(now);
                    return RegOutcome::Failed {
                        code: Some(code),
                        reason: "registrar granted no binding".into(),
                    };
                }
                self.stale_contact = None;
                self.failures = 0;
                self.state = RegistrationState::Registered;
                self.next_at = Some(now + refresh_delay(expires));
                RegOutcome::Registered { expires }
            }
            401 | 407 => match self.auth.on_challenge(resp) {
                Ok(()) => RegOutcome::Resend,
                Err(why) => {
                    self.fail(now);
                    RegOutcome::Failed {
                        code: Some(code),
                        reason: why.describe().into(),
                    }
                }
            },
            423 => {
                let min = resp
                    .header("Min-Expires")
                    .and_then(|v| v.trim().parse::<u32>().ok());
                match min {
                    Some(min) if min > self.expires => {
                        self.expires = min;
                        RegOutcome::Resend
                    }
                    _ => {
                        self.fail(now);
                        RegOutcome::Failed {
                            code: Some(423),
                            reason: "423 Interval Too Brief without a usable Min-Expires".into(),
                        }
                    }
                }
            }
            _ => {
                self.fail(now);
                let reason = match &resp.start {
                    super::message::StartLine::Response { reason, .. } => reason.clone(),
                    _ => String::new(),
                };
                RegOutcome::Failed {
                    code: Some(code),
                    reason: format!("{code} {reason}"),
                }
            }
        }
    }

    /// No response (timer F) or the transport failed (`transport_error` says why).
    pub fn on_timeout(&mut self, now: Instant) -> RegOutcome {
        self.pending = None;
        let transport_error = self.transport_error.take();
        if self.unregistering {
            self.state = RegistrationState::Unregistered;
            return RegOutcome::Unregistered;
        }
        self.fail(now);
        RegOutcome::Failed {
            code: None,
            reason: match transport_error {
                Some(why) => format!("cannot reach the registrar: {why}"),
                None => "no response from the registrar".into(),
            },
        }
    }

    fn fail(&mut self, now: Instant) {
        self.failures += 1;
        self.state = RegistrationState::Failed;
        self.next_at = if self.unregistering {
            None
        } else {
            Some(now + retry_delay(self.failures))
        };
    }
}

/// The expiry the registrar granted our Contact: its `;expires=` in the 200, else Expires.
fn granted_expiry(resp: &Message, contact: &Uri) -> Option<u32> {
    if let Ok(Contacts::List(list)) = resp.contacts() {
        let mine = list.iter().find(|c| {
            c.uri.user == contact.user
                && c.uri.host.eq_ignore_ascii_case(&contact.host)
                && c.uri.port.unwrap_or(5060) == contact.port.unwrap_or(5060)
        });
        if let Some(e) = mine
            .and_then(|c| c.param("expires").flatten())
            .and_then(|e| e.parse().ok())
        {
            return Some(e);
        }
    }
    resp.expires()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contact() -> Uri {
        Uri::parse("sip:carol@127.0.0.1:5065").unwrap()
    }

    fn resp(code: u16, extra: &str) -> Message {
        let raw = format!(
            "SIP/2.0 {code} X\r\nVia: SIP/2.0/UDP 127.0.0.1:5065;branch=z9hG4bKr;rport=5065;received=127.0.0.1\r\n\
From: <sip:carol@127.0.0.1>;tag=f\r\nTo: <sip:carol@127.0.0.1>;tag=t\r\nCall-ID: r1\r\nCSeq: 2 REGISTER\r\n{extra}Content-Length: 0\r\n\r\n"
        );
        Message::parse(raw.as_bytes()).unwrap()
    }

    #[test]
    fn ok_uses_the_contact_expiry_and_schedules_a_refresh() {
        let now = Instant::now();
        let mut r = Registration::new(600, ClientAuth::new("carol", "pw"));
        let out = r.on_response(
            &resp(200, "Contact: <sip:carol@127.0.0.1:5065>;expires=120, <sip:other@h>;expires=9\r\nExpires: 600\r\n"),
            &contact(),
            now,
        );
        assert_eq!(out, RegOutcome::Registered { expires: 120 });
        assert_eq!(r.next_at, Some(now + Duration::from_secs(102)));
    }

    #[test]
    fn interval_too_brief_raises_expiry_to_min_expires() {
        let mut r = Registration::new(60, ClientAuth::new("carol", "pw"));
        let out = r.on_response(
            &resp(423, "Min-Expires: 3600\r\n"),
            &contact(),
            Instant::now(),
        );
        assert_eq!(out, RegOutcome::Resend);
        assert_eq!(r.expires, 3600);
    }

    #[test]
    fn wrong_password_fails_on_the_second_challenge_for_the_same_nonce() {
        let now = Instant::now();
        let mut r = Registration::new(600, ClientAuth::new("carol", "bad"));
        let ch = "WWW-Authenticate: Digest realm=\"127.0.0.1\", nonce=\"n1\"\r\n";
        assert_eq!(
            r.on_response(&resp(401, ch), &contact(), now),
            RegOutcome::Resend
        );
        let out = r.on_response(&resp(401, ch), &contact(), now);
        assert!(
            matches!(
                out,
                RegOutcome::Failed {
                    code: Some(401),
                    ..
                }
            ),
            "{out:?}"
        );
        assert_eq!(r.state, RegistrationState::Failed);
        assert_eq!(r.next_at, Some(now + Duration::from_secs(5)));
    }

    #[test]
    fn nat_seen_by_registrar_corrects_the_contact_once() {
        let now = Instant::now();
        let mut r = Registration::new(600, ClientAuth::new("carol", "pw"));
        let natted = resp(200, "Expires: 600\r\n");
        let natted = Message::parse(
            String::from_utf8(natted.to_bytes())
                .unwrap()
                .replace(
                    "rport=5065;received=127.0.0.1",
                    "rport=40000;received=192.0.2.7",
                )
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(r.on_response(&natted, &contact(), now), RegOutcome::Resend);
        assert_eq!(r.public, Some(("192.0.2.7".into(), 40000)));
        let fixed = Uri::parse("sip:carol@192.0.2.7:40000").unwrap();
        assert_eq!(
            r.on_response(&natted, &fixed, now),
            RegOutcome::Registered { expires: 600 }
        );
    }

    #[test]
    fn the_source_port_of_a_tcp_connection_is_not_a_nat() {
        let now = Instant::now();
        let mut r = Registration::new(600, ClientAuth::new("carol", "pw"));
        let over_tcp = String::from_utf8(resp(200, "Expires: 600\r\n").to_bytes())
            .unwrap()
            .replace("SIP/2.0/UDP", "SIP/2.0/TCP")
            .replace("rport=5065", "rport=53312");
        let over_tcp = Message::parse(over_tcp.as_bytes()).unwrap();
        assert_eq!(
            r.on_response(&over_tcp, &contact(), now),
            RegOutcome::Registered { expires: 600 }
        );
        assert_eq!(r.public, None);
        // Behind a NAT (another address) the mapping is still what the registrar can reach.
        let natted = String::from_utf8(over_tcp.to_bytes())
            .unwrap()
            .replace("received=127.0.0.1", "received=192.0.2.7");
        let natted = Message::parse(natted.as_bytes()).unwrap();
        assert_eq!(r.on_response(&natted, &contact(), now), RegOutcome::Resend);
        assert_eq!(r.public, Some(("192.0.2.7".into(), 53312)));
    }

    #[test]
    fn back_off_grows_and_caps() {
        assert_eq!(retry_delay(1), Duration::from_secs(5));
        assert_eq!(retry_delay(2), Duration::from_secs(10));
        assert_eq!(retry_delay(4), Duration::from_secs(40));
        assert_eq!(retry_delay(30), Duration::from_secs(300));
    }

    #[test]
    fn server_error_fails_with_code_and_timeout_fails_without() {
        let now = Instant::now();
        let mut r = Registration::new(600, ClientAuth::new("carol", "pw"));
        assert!(matches!(
            r.on_response(&resp(503, ""), &contact(), now),
            RegOutcome::Failed {
                code: Some(503),
                ..
            }
        ));
        assert!(matches!(
            r.on_timeout(now),
            RegOutcome::Failed { code: None, .. }
        ));
        assert_eq!(r.failures, 2);
    }
}
