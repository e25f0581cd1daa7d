//! Dialogs (RFC 3261 section 12): identifiers, sequence numbers, the remote target and the route set,
//! and building in-dialog requests that follow the route set (loose routing, 16.12).

use super::message::{Message, Method};
use super::uri::{NameAddr, Uri};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dialog {
    pub call_id: String,
    pub local_tag: String,
    pub remote_tag: String,
    /// Our From (UAC) or To (UAS) value, tag included, written in every request we send.
    pub local: NameAddr,
    /// The far end's, tag included.
    pub remote: NameAddr,
    pub local_seq: u32,
    /// Highest CSeq seen from the far end (None before any request from it).
    pub remote_seq: Option<u32>,
    /// Where in-dialog requests go: the far end's Contact.
    pub remote_target: Uri,
    /// Route set as raw name-addr values, in the order requests must carry them.
    pub route_set: Vec<String>,
}

impl Dialog {
    /// The UAC side, from the INVITE we sent and a 2xx (or 1xx with a tag) we received (12.1.2).
    pub fn from_uac(invite: &Message, resp: &Message) -> Option<Dialog> {
        let local = invite.from().ok()?;
        let remote = resp.to().ok()?;
        let mut route_set: Vec<String> = resp
            .header_values("Record-Route")
            .into_iter()
            .map(str::to_string)
            .collect();
        route_set.reverse();
        let remote_target =
            contact_uri(resp).or_else(|| invite.request_uri().and_then(|u| Uri::parse(u).ok()))?;
        Some(Dialog {
            call_id: invite.call_id().ok()?.to_string(),
            local_tag: local.tag()?.to_string(),
            remote_tag: remote.tag().unwrap_or_default().to_string(),
            local_seq: invite.cseq().ok()?.0,
            remote_seq: None,
            remote_target,
            route_set,
            local,
            remote,
        })
    }

    /// The UAS side, from an INVITE we received and the tag we put in our To (12.1.1).
    pub fn from_uas(invite: &Message, local_tag: &str) -> Option<Dialog> {
        let remote = invite.from().ok()?;
        let local = invite.to().ok()?.with_tag(local_tag);
        let route_set = invite
            .header_values("Record-Route")
            .into_iter()
            .map(str::to_string)
            .collect();
        Some(Dialog {
            call_id: invite.call_id().ok()?.to_string(),
            local_tag: local_tag.to_string(),
            remote_tag: remote.tag().unwrap_or_default().to_string(),
            local_seq: rand::random::<u16>() as u32 + 1,
            remote_seq: Some(invite.cseq().ok()?.0),
            remote_target: contact_uri(invite)?,
            route_set,
            local,
            remote,
        })
    }

    /// Does this message belong to the dialog? (Call-ID and both tags, from our side's view.)
    pub fn matches(&self, msg: &Message) -> bool {
        let Ok(call_id) = msg.call_id() else {
            return false;
        };
        if call_id != self.call_id {
            return false;
        }
        let (ours, theirs) = if msg.is_request() {
            (msg.to(), msg.from())
        } else {
            (msg.from(), msg.to())
        };
        let (Ok(ours), Ok(theirs)) = (ours, theirs) else {
            return false;
        };
        ours.tag() == Some(self.local_tag.as_str())
            && (self.remote_tag.is_empty() || theirs.tag() == Some(self.remote_tag.as_str()))
    }

    /// Checks and records the CSeq of an in-dialog request; false means out of order (reply 500).
    pub fn accept_remote_cseq(&mut self, req: &Message) -> bool {
        let Ok((n, method)) = req.cseq() else {
            return false;
        };
        if method == Method::Ack || method == Method::Cancel {
            return true;
        }
        match self.remote_seq {
            Some(seen) if n <= seen => false,
            _ => {
                self.remote_seq = Some(n);
                true
            }
        }
    }

    /// Refresh the remote target from a target-refresh request or response (re-INVITE, 12.2).
    pub fn refresh_target(&mut self, msg: &Message) {
        if let Some(uri) = contact_uri(msg) {
            self.remote_target = uri;
        }
    }

    /// A new in-dialog request (not ACK or CANCEL): CSeq is incremented.
    /// `via` and `contact` are added by the caller, who knows the transport.
    pub fn request(&mut self, method: Method) -> Message {
        self.local_seq += 1;
        let seq = self.local_seq;
        self.request_with_seq(method, seq)
    }

    /// The ACK for a 2xx: same CSeq number as the INVITE (13.2.2.4).
    pub fn ack(&self, invite_seq: u32) -> Message {
        self.request_with_seq(Method::Ack, invite_seq)
    }

    fn request_with_seq(&self, method: Method, seq: u32) -> Message {
        let mut req = Message::request(method.clone(), self.request_uri());
        for r in self.route_values() {
            req.push_header("Route", r);
        }
        req.push_header("Max-Forwards", "70");
        req.push_header("From", self.local.to_string());
        req.push_header("To", self.remote.to_string());
        req.push_header("Call-ID", self.call_id.clone());
        req.push_header("CSeq", format!("{seq} {method}"));
        req
    }

    /// The Request-URI: the remote target, unless the first route is a strict router (12.2.1.1).
    fn request_uri(&self) -> String {
        match self.first_route() {
            Some(first) if first.uri.param("lr").is_none() => first.uri.to_string(),
            _ => self.remote_target.to_string(),
        }
    }

    fn route_values(&self) -> Vec<String> {
        match self.first_route() {
            Some(first) if first.uri.param("lr").is_none() => {
                // Strict routing: the first route became the Request-URI; the target goes last.
                let mut v: Vec<String> = self.route_set.iter().skip(1).cloned().collect();
                v.push(format!("<{}>", self.remote_target));
                v
            }
            _ => self.route_set.clone(),
        }
    }

    fn first_route(&self) -> Option<NameAddr> {
        self.route_set.first().and_then(|r| NameAddr::parse(r).ok())
    }

    /// Where the next request physically goes: the first route, or else the remote target.
    pub fn next_hop(&self) -> Uri {
        self.first_route()
            .map(|r| r.uri)
            .unwrap_or_else(|| self.remote_target.clone())
    }
}

/// The URI of the first Contact of a message.
pub fn contact_uri(msg: &Message) -> Option<Uri> {
    match msg.contacts().ok()? {
        super::message::Contacts::List(list) => list.into_iter().next().map(|c| c.uri),
        super::message::Contacts::Star => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &str = "INVITE sip:bob@127.0.0.1 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5065;branch=z9hG4bKa\r\n\
From: \"Carol\" <sip:carol@127.0.0.1>;tag=c1\r\n\
To: <sip:bob@127.0.0.1>\r\n\
Call-ID: d1\r\nCSeq: 10 INVITE\r\n\
Contact: <sip:carol@127.0.0.1:5065>\r\nContent-Length: 0\r\n\r\n";

    const OK: &str = "SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5065;branch=z9hG4bKa\r\n\
Record-Route: <sip:127.0.0.1:5060;lr>, <sip:10.0.0.1;lr;r2=on>\r\n\
From: \"Carol\" <sip:carol@127.0.0.1>;tag=c1\r\n\
To: <sip:bob@127.0.0.1>;tag=b1\r\n\
Call-ID: d1\r\nCSeq: 10 INVITE\r\n\
Contact: <sip:bob@127.0.0.1:5063;gr=urn:uuid:1-2>\r\nContent-Length: 0\r\n\r\n";

    #[test]
    fn uac_dialog_reverses_record_route_and_targets_contact() {
        let inv = Message::parse(INVITE.as_bytes()).unwrap();
        let ok = Message::parse(OK.as_bytes()).unwrap();
        let mut d = Dialog::from_uac(&inv, &ok).unwrap();
        assert_eq!(
            d.route_set,
            vec!["<sip:10.0.0.1;lr;r2=on>", "<sip:127.0.0.1:5060;lr>"]
        );
        assert_eq!(d.remote_tag, "b1");
        let bye = d.request(Method::Bye);
        assert_eq!(
            bye.request_uri(),
            Some("sip:bob@127.0.0.1:5063;gr=urn:uuid:1-2")
        );
        assert_eq!(bye.cseq().unwrap(), (11, Method::Bye));
        assert_eq!(bye.header_values("Route").len(), 2);
        assert_eq!(d.next_hop().host, "10.0.0.1");
        assert!(d.matches(&ok));
    }

    #[test]
    fn uas_dialog_keeps_record_route_order_and_checks_cseq() {
        let mut inv = Message::parse(INVITE.as_bytes()).unwrap();
        inv.push_header("Record-Route", "<sip:127.0.0.1:5060;lr>");
        let mut d = Dialog::from_uas(&inv, "u1").unwrap();
        assert_eq!(d.route_set, vec!["<sip:127.0.0.1:5060;lr>"]);
        assert_eq!(d.remote_target.port, Some(5065));
        let mut bye = Message::parse(INVITE.replace("INVITE", "BYE").as_bytes()).unwrap();
        bye.set_header("To", "<sip:bob@127.0.0.1>;tag=u1");
        bye.set_header("CSeq", "11 BYE");
        assert!(d.matches(&bye));
        assert!(d.accept_remote_cseq(&bye));
        assert!(
            !d.accept_remote_cseq(&bye),
            "a repeated CSeq is out of order"
        );
    }

    #[test]
    fn strict_router_becomes_request_uri() {
        let inv = Message::parse(INVITE.as_bytes()).unwrap();
        let ok = Message::parse(
            OK.replace(
                "<sip:127.0.0.1:5060;lr>, <sip:10.0.0.1;lr;r2=on>",
                "<sip:10.9.9.9>",
            )
            .as_bytes(),
        )
        .unwrap();
        let mut d = Dialog::from_uac(&inv, &ok).unwrap();
        let bye = d.request(Method::Bye);
        assert_eq!(bye.request_uri(), Some("sip:10.9.9.9"));
        assert_eq!(
            bye.header_values("Route"),
            vec!["<sip:bob@127.0.0.1:5063;gr=urn:uuid:1-2>"]
        );
    }
}
