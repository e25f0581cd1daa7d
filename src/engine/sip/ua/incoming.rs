//! Incoming requests that belong to calls: new INVITEs, re-INVITEs, ACK, CANCEL, BYE; answering and rejecting.

use super::*;

impl UserAgent {
    pub(super) fn answer(&mut self, id: CallId, now: Instant) {
        let Some(call) = self.calls.get_mut(&id) else {
            return self.error(format!("no call {id} to answer"));
        };
        if call.direction != Direction::Incoming || call.phase != Phase::Ringing {
            return self.error(format!("call {id} is not ringing"));
        }
        let Some((invite, target)) = call.invite_in.clone() else {
            return;
        };
        let body = match offer_of(&invite) {
            Some(Ok(offer)) => match call.prepare_answer(&offer, MediaDirection::SendRecv) {
                Ok(answer) => call.take_answer(answer),
                Err(e) => {
                    let msg = format!("call {id}: cannot answer the offer: {e}");
                    self.error(msg);
                    return self.reject(id, 488, now);
                }
            },
            Some(Err(e)) => {
                self.error(format!("call {id}: bad SDP offer: {e}"));
                return self.reject(id, 488, now);
            }
            None => {
                // No offer in the INVITE: we offer in the 200, the answer comes in the ACK.
                call.awaiting_ack_answer = true;
                sdp::create_offer(&call.local_media, &mut call.sdp, MediaDirection::SendRecv)
            }
        };
        let mut ok = self.dialog_response(&invite, id, 200);
        ok.push_header("Allow", ALLOW);
        ok.push_header("Supported", "replaces");
        ok.set_body("application/sdp", body.into_bytes());
        let cseq = invite.cseq().map(|(n, _)| n).unwrap_or(0);
        self.send_ok_reliably(id, ok, target, cseq, now);
        if let Some(call) = self.calls.get_mut(&id)
            && let Some(e) = call.set_phase(Phase::Established, Some(200), now)
        {
            self.emit(e);
        }
    }

    /// Sends a 2xx to an INVITE through its transaction and retransmits it until the ACK.
    pub(super) fn send_ok_reliably(
        &mut self,
        id: CallId,
        ok: Message,
        target: Target,
        cseq: u32,
        now: Instant,
    ) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let key = call.server_key.clone();
        let bytes = ok.to_bytes();
        let t1 = self.cfg.timers.t1;
        call.pending_ok = Some(PendingOk {
            bytes: bytes.clone(),
            target: target.clone(),
            next_at: now + t1,
            interval: t1,
            give_up_at: now + self.cfg.timers.timeout(),
            cseq,
        });
        let keep = now + self.cfg.timers.timeout();
        match key.and_then(|k| self.server.get_mut(&k)) {
            Some(entry) => {
                for o in entry.tx.respond(&ok, now) {
                    if let TxOutput::Transmit(b) = o {
                        self.out.push_back(Output::Transmit {
                            target: entry.target.clone(),
                            bytes: b,
                        });
                    }
                }
                entry.keep_until = Some(keep);
            }
            None => self.transmit(target, bytes),
        }
    }

    /// A response to `req` that belongs to call `id`'s dialog: To tag, Contact.
    pub(super) fn dialog_response(&self, req: &Message, id: CallId, code: u16) -> Message {
        let mut resp = Message::response_to(req, code, reason_phrase(code));
        if let Some(call) = self.calls.get(&id) {
            if let Ok(to) = req.to()
                && to.tag().is_none()
            {
                resp.set_header("To", to.with_tag(&call.local_tag).to_string());
            }
            let transport = call.target.transport;
            if code > 100 && code < 300 {
                let account = call.account.and_then(|a| self.account_index(a));
                resp.push_header("Contact", format!("<{}>", self.contact(account, transport)));
            }
        }
        resp.push_header("Server", self.cfg.user_agent.clone());
        resp
    }

    /// Responds through the server transaction `key` (which must exist).
    pub(super) fn respond(&mut self, key: &str, resp: Message, now: Instant) {
        if let Some(entry) = self.server.get_mut(key) {
            let target = entry.target.clone();
            for o in entry.tx.respond(&resp, now) {
                if let TxOutput::Transmit(b) = o {
                    self.out.push_back(Output::Transmit {
                        target: target.clone(),
                        bytes: b,
                    });
                }
            }
        }
    }

    pub(super) fn simple_response(&mut self, key: &str, req: &Message, code: u16, now: Instant) {
        let mut resp = Message::response_to(req, code, reason_phrase(code));
        if let Ok(to) = req.to()
            && to.tag().is_none()
            && code > 100
        {
            resp.set_header(
                "To",
                to.with_tag(&format!("{:08x}", rand::random::<u32>()))
                    .to_string(),
            );
        }
        if code == 405 || code == 200 {
            resp.push_header("Allow", ALLOW);
        }
        resp.push_header("Server", self.cfg.user_agent.clone());
        self.respond(key, resp, now);
    }

    pub(super) fn reject(&mut self, id: CallId, code: u16, now: Instant) {
        let Some(call) = self.calls.get(&id) else {
            return self.error(format!("no call {id} to reject"));
        };
        if call.direction != Direction::Incoming || call.phase != Phase::Ringing {
            return self.error(format!("call {id} is not ringing"));
        }
        let (Some((invite, _)), Some(key)) = (call.invite_in.clone(), call.server_key.clone())
        else {
            return;
        };
        let resp = self.dialog_response(&invite, id, code);
        self.respond(&key, resp, now);
        let reason = if code == 488 {
            EndReason::Error
        } else {
            EndReason::Declined
        };
        self.end_call(id, reason, Some(code), now);
    }

    pub(super) fn account_for(&self, req: &Message) -> Option<usize> {
        let ruri_user = req
            .request_uri()
            .and_then(|u| Uri::parse(u).ok())
            .and_then(|u| u.user);
        let to_user = req.to().ok().and_then(|t| t.uri.user);
        self.accounts.iter().position(|a| {
            let user = a.aor.user.as_deref();
            user.is_some() && (ruri_user.as_deref() == user || to_user.as_deref() == user)
        })
    }

    pub(super) fn on_new_invite(
        &mut self,
        key: String,
        req: Message,
        target: Target,
        now: Instant,
    ) {
        if self.quit_deadline.is_some() {
            return self.simple_response(&key, &req, 486, now);
        }
        // The same INVITE again on another branch (a forking proxy sent it twice): 8.2.2.2.
        let merged = self.calls.values().any(|c| {
            c.invite_in
                .as_ref()
                .is_some_and(|(first, _)| same_request(first, &req))
        });
        if merged {
            return self.simple_response(&key, &req, 482, now);
        }
        if self.cfg.do_not_disturb {
            return self.refuse(key, &req, 486, "do-not-disturb", now);
        }
        let offer = offer_of(&req);
        let id = CallId(self.next_call);
        let port = self.alloc_rtp_port();
        let mut media = self.local_media(port);
        let account = self.account_for(&req);
        let encryption = self.encryption_for(account);
        if offer.is_none() && encryption.offers_srtp() {
            // No offer: we offer in the 200, RTP/SAVP as the setting asks.
            media.crypto = self.fresh_crypto();
        }
        let from = req.from().map(|f| f.pretty()).unwrap_or_default();
        let mut call = Call::new(
            id,
            Direction::Incoming,
            account.map(|i| self.accounts[i].id),
            from.clone(),
            target.clone(),
            media,
            now,
        );
        call.encryption = encryption;
        if let Some(check) = &offer {
            // Answerable now (codecs, SRTP policy and keys), so that answering later works.
            let usable = check
                .as_ref()
                .map_err(|e| e.to_string())
                .and_then(|o| call.prepare_answer(o, MediaDirection::SendRecv).map(|_| ()));
            if let Err(e) = usable {
                tracing::warn!("incoming INVITE with unusable SDP: {e}");
                self.emit(Event::Error {
                    message: format!("incoming call from {from} refused (488): {e}"),
                });
                return self.simple_response(&key, &req, 488, now);
            }
        }
        let Some(dialog) = Dialog::from_uas(&req, &call.local_tag) else {
            return self.simple_response(&key, &req, 400, now);
        };
        self.next_call += 1;
        call.dialog = Some(dialog);
        call.invite_in = Some((req.clone(), target));
        call.server_key = Some(key.clone());
        tracing::info!(call = %id, "incoming call from {from}");
        self.calls.insert(id, call);
        self.respond(&key, Message::response_to(&req, 100, "Trying"), now);
        let ringing = self.dialog_response(&req, id, 180);
        self.respond(&key, ringing, now);
        self.emit(Event::Incoming {
            call: id,
            from,
            account: account.map(|i| self.accounts[i].id),
        });
        if let Some(c) = self.calls.get(&id) {
            let e = c.event();
            self.emit(e);
        }
        if self.cfg.auto_answer {
            self.answer(id, now);
        }
    }

    /// Refuses a new INVITE at once, without ringing (do-not-disturb), and tells the UI so it
    /// can count a missed call: the call gets an id, but no call state.
    fn refuse(&mut self, key: String, req: &Message, code: u16, why: &str, now: Instant) {
        let id = CallId(self.next_call);
        self.next_call += 1;
        let from = req.from().map(|f| f.pretty()).unwrap_or_default();
        let account = self.account_for(req).map(|i| self.accounts[i].id);
        tracing::info!(call = %id, "incoming call from {from} refused with {code}: {why}");
        self.simple_response(&key, req, code, now);
        self.emit(Event::IncomingRefused {
            call: id,
            from,
            account,
            code,
            reason: why.into(),
        });
    }

    pub(super) fn find_dialog_call(&self, req: &Message) -> Option<CallId> {
        self.calls
            .values()
            .find(|c| c.dialog.as_ref().is_some_and(|d| d.matches(req)))
            .map(|c| c.id)
    }

    pub(super) fn on_reinvite(&mut self, key: String, req: Message, now: Instant) {
        let Some(id) = self.find_dialog_call(&req) else {
            return self.simple_response(&key, &req, 481, now);
        };
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if call.phase != Phase::Established {
            return self.simple_response(&key, &req, 481, now);
        }
        let in_order = call
            .dialog
            .as_mut()
            .is_some_and(|d| d.accept_remote_cseq(&req));
        if !in_order {
            return self.simple_response(&key, &req, 500, now);
        }
        if call.reinvite.is_some() {
            return self.simple_response(&key, &req, 491, now);
        }
        if call.pending_ok.is_some() {
            let mut resp = Message::response_to(&req, 500, "Server Internal Error");
            resp.push_header("Retry-After", "1");
            return self.respond(&key, resp, now);
        }
        let dir = call.local_direction();
        let body = match offer_of(&req) {
            Some(Ok(offer)) => match call.prepare_answer(&offer, dir) {
                Ok(answer) => {
                    let text = call.take_answer(answer);
                    call.hold.remote = call
                        .negotiated
                        .as_ref()
                        .is_some_and(|n| !n.remote_direction.receives());
                    text
                }
                Err(e) => {
                    tracing::warn!(call = %id, "re-INVITE offer refused: {e}");
                    return self.simple_response(&key, &req, 488, now);
                }
            },
            Some(Err(e)) => {
                tracing::warn!(call = %id, "re-INVITE with bad SDP: {e}");
                return self.simple_response(&key, &req, 488, now);
            }
            None => {
                call.awaiting_ack_answer = true;
                sdp::create_offer(&call.local_media, &mut call.sdp, dir)
            }
        };
        if let Some(d) = call.dialog.as_mut() {
            d.refresh_target(&req);
        }
        let target = self
            .server
            .get(&key)
            .map(|e| e.target.clone())
            .unwrap_or_else(|| call.target.clone());
        let mut ok = self.dialog_response(&req, id, 200);
        ok.push_header("Allow", ALLOW);
        ok.set_body("application/sdp", body.into_bytes());
        let cseq = req.cseq().map(|(n, _)| n).unwrap_or(0);
        if let Some(call) = self.calls.get_mut(&id) {
            call.server_key = Some(key);
        }
        self.send_ok_reliably(id, ok, target, cseq, now);
        if let Some(call) = self.calls.get(&id) {
            tracing::info!(call = %id, "re-INVITE: remote hold {}", call.hold.remote);
            let e = call.event();
            self.emit(e);
        }
    }

    pub(super) fn on_ack(&mut self, req: &Message, now: Instant) {
        let Some(id) = self.find_dialog_call(req) else {
            tracing::debug!("ACK for no dialog; dropped");
            return;
        };
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let seq = req.cseq().map(|(n, _)| n).unwrap_or(0);
        if call.pending_ok.as_ref().is_some_and(|p| p.cseq == seq) {
            call.pending_ok = None;
        }
        if call.awaiting_ack_answer {
            call.awaiting_ack_answer = false;
            let result = std::str::from_utf8(&req.body)
                .map_err(|e| e.to_string())
                .and_then(|b| SessionDescription::parse(b).map_err(|e| e.to_string()))
                .and_then(|d| {
                    sdp::negotiate_answer(&call.local_media, &d).map_err(|e| e.to_string())
                });
            match result.and_then(|n| {
                let held = !n.remote_direction.receives();
                call.apply_negotiated(n).map(|()| held)
            }) {
                Ok(held) => {
                    let changed = call.hold.remote != held;
                    call.hold.remote = held;
                    if changed {
                        let e = call.event();
                        self.emit(e);
                    }
                }
                Err(e) => {
                    self.error(format!("call {id}: the ACK carried no usable answer: {e}"));
                    self.bye(id, EndReason::Error, now);
                }
            }
        }
    }

    pub(super) fn on_cancel(&mut self, key: String, req: Message, now: Instant) {
        let branch = req
            .top_via()
            .ok()
            .and_then(|v| v.branch().map(str::to_string));
        let invite_key = branch.map(|b| tx_key(&b, &Method::Invite));
        let call = invite_key.as_ref().and_then(|k| {
            self.calls
                .values()
                .find(|c| c.server_key.as_ref() == Some(k) && c.direction == Direction::Incoming)
                .map(|c| c.id)
        });
        let Some(id) = call else {
            return self.simple_response(&key, &req, 481, now);
        };
        self.simple_response(&key, &req, 200, now);
        let ringing = self
            .calls
            .get(&id)
            .is_some_and(|c| c.phase == Phase::Ringing);
        if ringing {
            if let (Some(k), Some(Some((invite, _)))) =
                (invite_key, self.calls.get(&id).map(|c| c.invite_in.clone()))
            {
                let resp = self.dialog_response(&invite, id, 487);
                self.respond(&k, resp, now);
            }
            self.end_call(id, EndReason::Cancelled, Some(487), now);
        }
    }

    /// An INFO in a dialog: DTMF (`application/dtmf-relay` or `application/dtmf`) becomes an
    /// event; anything else is acknowledged and ignored.
    pub(super) fn on_info(&mut self, key: String, req: Message, now: Instant) {
        let Some(id) = self.find_dialog_call(&req) else {
            return self.simple_response(&key, &req, 481, now);
        };
        self.simple_response(&key, &req, 200, now);
        let ctype = req
            .header("Content-Type")
            .unwrap_or_default()
            .to_ascii_lowercase();
        let body = String::from_utf8_lossy(&req.body);
        let (digit, duration_ms) = if ctype.starts_with("application/dtmf-relay") {
            let field = |name: &str| {
                body.lines()
                    .filter_map(|l| l.split_once('='))
                    .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.trim().to_string())
            };
            let digit = field("Signal").and_then(|s| s.chars().next());
            let duration = field("Duration").and_then(|d| d.parse().ok()).unwrap_or(0);
            (digit, duration)
        } else if ctype.starts_with("application/dtmf") {
            (body.trim().chars().next(), 0)
        } else {
            return;
        };
        match digit.map(|d| d.to_ascii_uppercase()) {
            Some(digit) if "0123456789*#ABCD".contains(digit) => self.emit(Event::Dtmf {
                call: id,
                digit,
                duration_ms,
            }),
            _ => tracing::warn!(call = %id, "INFO with an unreadable DTMF body: {body:?}"),
        }
    }

    pub(super) fn on_bye(&mut self, key: String, req: Message, now: Instant) {
        let Some(id) = self.find_dialog_call(&req) else {
            return self.simple_response(&key, &req, 481, now);
        };
        if let Some(d) = self.calls.get_mut(&id).and_then(|c| c.dialog.as_mut()) {
            d.accept_remote_cseq(&req);
        }
        self.simple_response(&key, &req, 200, now);
        self.end_call(id, EndReason::RemoteHangup, None, now);
    }
}

/// Same Call-ID, From tag and CSeq: one request, whatever the branch (a merged request).
fn same_request(a: &Message, b: &Message) -> bool {
    let from_tag = |m: &Message| m.from().ok().and_then(|f| f.tag().map(str::to_string));
    a.call_id().ok() == b.call_id().ok()
        && a.cseq().ok() == b.cseq().ok()
        && from_tag(a).is_some()
        && from_tag(a) == from_tag(b)
}

/// The SDP offer in a request body: None without a body, Some(Err) when it does not parse.
fn offer_of(req: &Message) -> Option<Result<SessionDescription, String>> {
    if req.body.is_empty() {
        return None;
    }
    if let Some(ct) = req.header("Content-Type")
        && !ct.to_ascii_lowercase().contains("application/sdp")
    {
        return Some(Err(format!("unsupported body type {ct}")));
    }
    Some(
        std::str::from_utf8(&req.body)
            .map_err(|e| e.to_string())
            .and_then(|b| SessionDescription::parse(b).map_err(|e| e.to_string())),
    )
}
