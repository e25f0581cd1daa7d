//! Requests inside a dialog from our side: BYE, hold/resume re-INVITEs, and the call timers.

use super::*;

impl UserAgent {
    /// An in-dialog request with its Via. `seq` is for ACK (the INVITE's CSeq number).
    pub(super) fn in_dialog_skeleton(
        &self,
        dialog: &mut Dialog,
        method: Method,
        seq: Option<u32>,
        target: &Target,
    ) -> (Message, String) {
        let branch = new_branch();
        let mut req = match seq {
            Some(n) => dialog.ack(n),
            None => dialog.request(method.clone()),
        };
        req.push_top_header("Via", self.via(target.transport, &branch));
        if method != Method::Ack {
            req.push_header("User-Agent", self.cfg.user_agent.clone());
        }
        (req, branch)
    }

    pub(super) fn send_bye_on(&mut self, dialog: &mut Dialog, id: CallId, now: Instant) {
        let transport = self
            .calls
            .get(&id)
            .map(|c| c.target.transport)
            .unwrap_or(Transport::Udp);
        let target = Target::for_uri(&dialog.next_hop(), transport);
        let (req, branch) = self.in_dialog_skeleton(dialog, Method::Bye, None, &target);
        self.start_client(req, &branch, target, Owner::Bye(id), now);
    }

    /// Sends BYE on the call's dialog and ends the call with `reason`.
    pub(super) fn bye(&mut self, id: CallId, reason: EndReason, now: Instant) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if let Some(mut dialog) = call.dialog.take() {
            self.send_bye_on(&mut dialog, id, now);
            if let Some(call) = self.calls.get_mut(&id) {
                call.dialog = Some(dialog);
            }
        }
        self.end_call(id, reason, None, now);
    }

    pub(super) fn end_call(
        &mut self,
        id: CallId,
        reason: EndReason,
        code: Option<u16>,
        now: Instant,
    ) {
        if let Some(call) = self.calls.get_mut(&id)
            && let Some(e) = call.end(reason, code, now)
        {
            self.emit(e);
        }
    }

    pub(super) fn hangup(&mut self, id: CallId, now: Instant) {
        if !self.calls.get(&id).is_some_and(|c| c.phase != Phase::Ended) {
            return self.error(format!("no call {id} to hang up"));
        }
        self.hangup_inner(id, now, true);
    }

    pub(super) fn hangup_inner(&mut self, id: CallId, now: Instant, _user: bool) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        match (call.phase, call.direction) {
            (Phase::Ended, _) => {}
            (Phase::Calling | Phase::Ringing, Direction::Outgoing) => {
                call.cancelled = true;
                if call.provisional_seen {
                    self.send_cancel(id, now);
                } else {
                    // RFC 3261 9.1: CANCEL only once a provisional response came.
                    call.cancel_pending = true;
                    call.cancel_deadline = Some(now + self.cfg.timers.timeout());
                }
                self.end_call(id, EndReason::Cancelled, None, now);
            }
            (Phase::Calling | Phase::Ringing, Direction::Incoming) => {
                self.reject(id, 603, now);
            }
            (Phase::Established, _) => self.bye(id, EndReason::LocalHangup, now),
        }
    }

    pub(super) fn set_hold(&mut self, id: CallId, hold: bool, now: Instant) {
        let Some(call) = self.calls.get(&id) else {
            return self.error(format!("no call {id}"));
        };
        if call.phase != Phase::Established {
            return self.error(format!("call {id} is not established"));
        }
        // Our 2xx may still wait for its ACK: that matters only when the 2xx carried our offer
        // (the answer comes in the ACK); otherwise the exchange is complete (RFC 3261 14.1).
        if call.reinvite.is_some() || call.awaiting_ack_answer {
            return self.error(format!(
                "call {id}: an offer/answer exchange is already in progress"
            ));
        }
        if call.hold.local == hold {
            return;
        }
        self.send_reinvite(id, hold, now);
    }

    pub(super) fn send_reinvite(&mut self, id: CallId, hold: bool, now: Instant) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        call.reinvite_retry = None;
        let Some(mut dialog) = call.dialog.take() else {
            return;
        };
        let target = Target::for_uri(&dialog.next_hop(), call.target.transport);
        let dir = if hold {
            MediaDirection::SendOnly
        } else {
            MediaDirection::SendRecv
        };
        let (mut req, branch) = self.in_dialog_skeleton(&mut dialog, Method::Invite, None, &target);
        let account = self
            .calls
            .get(&id)
            .and_then(|c| c.account)
            .and_then(|a| self.account_index(a));
        req.push_header(
            "Contact",
            format!("<{}>", self.contact(account, target.transport)),
        );
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let offer = sdp::create_offer(&call.local_media, &mut call.sdp, dir);
        req.push_header("Allow", ALLOW);
        req.set_body("application/sdp", offer.into_bytes());
        if let Some(a) = call.auth.as_mut().filter(|a| a.has_challenges()) {
            a.apply(&mut req);
        }
        call.dialog = Some(dialog);
        call.reinvite = Some(PendingReinvite {
            branch: branch.clone(),
            hold,
            request: req.clone(),
            deadline: now + self.cfg.timers.timeout(),
        });
        tracing::info!(call = %id, "{} (re-INVITE)", if hold { "holding" } else { "resuming" });
        self.start_client(req, &branch, target, Owner::Reinvite(id), now);
    }

    pub(super) fn on_reinvite_response(&mut self, id: CallId, resp: Message, now: Instant) {
        let Some(code) = resp.status() else { return };
        if code < 200 {
            return;
        }
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(pending) = call.reinvite.take() else {
            return;
        };
        match code {
            200..=299 => {
                let seq = pending.request.cseq().map(|(n, _)| n).unwrap_or(1);
                let Some(mut dialog) = call.dialog.take() else {
                    return;
                };
                dialog.refresh_target(&resp);
                let target = Target::for_uri(&dialog.next_hop(), call.target.transport);
                let (ack, _) =
                    self.in_dialog_skeleton(&mut dialog, Method::Ack, Some(seq), &target);
                let bytes = ack.to_bytes();
                self.transmit(target.clone(), bytes.clone());
                let Some(call) = self.calls.get_mut(&id) else {
                    return;
                };
                call.dialog = Some(dialog);
                call.ack = Some((bytes, target));
                match std::str::from_utf8(&resp.body)
                    .map_err(|e| e.to_string())
                    .and_then(|b| SessionDescription::parse(b).map_err(|e| e.to_string()))
                    .and_then(|d| {
                        sdp::negotiate_answer(&call.local_media, &d).map_err(|e| e.to_string())
                    }) {
                    Ok(n) => {
                        if let Err(why) = call.apply_negotiated(n) {
                            // The far end changed the media security under us: no call.
                            self.error(format!("call {id}: re-INVITE answer refused: {why}"));
                            return self.bye(id, EndReason::Error, now);
                        }
                    }
                    Err(e) => tracing::warn!(call = %id, "re-INVITE answer unusable: {e}"),
                }
                call.hold.local = pending.hold;
                let e = call.event();
                self.emit(e);
            }
            401 | 407 => {
                let ok = call
                    .auth
                    .as_mut()
                    .map(|a| a.on_challenge(&resp).is_ok())
                    .unwrap_or(false);
                if ok {
                    self.send_reinvite(id, pending.hold, now);
                } else {
                    self.error(format!("call {id}: re-INVITE rejected ({code})"));
                }
            }
            491 => {
                // Glare: both sides sent a re-INVITE. Try again after a random 2.1–4 s (14.1).
                let wait = Duration::from_millis(2100 + u64::from(rand::random::<u16>() % 1900));
                call.reinvite_retry = Some((now + wait, pending.hold));
            }
            408 | 481 => {
                self.error(format!("call {id}: the dialog is gone ({code})"));
                let reason = if code == 408 {
                    EndReason::Timeout
                } else {
                    EndReason::Error
                };
                self.bye(id, reason, now);
            }
            _ => {
                let what = if pending.hold { "hold" } else { "resume" };
                self.error(format!("call {id}: {what} refused by the far end ({code})"));
            }
        }
    }

    /// A call's own timers: 2xx retransmission, the wait for 487, ring limit, re-INVITE limit, glare retry.
    pub(super) fn call_timers(&mut self, id: CallId, now: Instant) {
        let t2 = self.cfg.timers.t2;
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let mut resend = None;
        let mut no_ack = false;
        if let Some(p) = call.pending_ok.as_mut() {
            if now >= p.give_up_at {
                no_ack = true;
            } else if now >= p.next_at {
                p.interval = (p.interval * 2).min(t2);
                p.next_at = now + p.interval;
                resend = Some((p.target.clone(), p.bytes.clone()));
            }
        }
        let mut give_up_invite = None;
        if call.cancel_deadline.is_some_and(|t| now >= t) {
            call.cancel_deadline = None;
            call.cancel_pending = false;
            // No final response 64*T1 after the CANCEL: the INVITE is given up too (9.1).
            give_up_invite = call
                .invite_branch
                .as_ref()
                .map(|b| tx_key(b, &Method::Invite));
        }
        let retry = call
            .reinvite_retry
            .filter(|(t, _)| now >= *t)
            .map(|(_, h)| h);
        let ring_expired = call.ring_deadline.is_some_and(|t| now >= t)
            && matches!(call.phase, Phase::Calling | Phase::Ringing);
        if ring_expired {
            call.ring_deadline = None;
        }
        let stuck_reinvite = match &call.reinvite {
            Some(r) if now >= r.deadline => call
                .reinvite
                .take()
                .map(|r| (r.request, r.branch, call.target.transport)),
            _ => None,
        };
        if let Some((t, b)) = resend {
            self.transmit(t, b);
        }
        if let Some(k) = give_up_invite {
            self.client.remove(&k);
        }
        if ring_expired {
            tracing::info!(call = %id, "no answer within {} s: cancelling", RING_LIMIT.as_secs());
            if let Some(c) = self.calls.get_mut(&id) {
                c.cancelled = true;
            }
            self.send_cancel(id, now);
            self.end_call(id, EndReason::Timeout, None, now);
        }
        if let Some((req, branch, transport)) = stuck_reinvite {
            // Only provisional answers for 64*T1: withdraw the offer, keep the call as it was.
            self.error(format!(
                "call {id}: the far end did not answer the re-INVITE"
            ));
            let target = self
                .calls
                .get(&id)
                .and_then(|c| c.dialog.as_ref())
                .map(|d| Target::for_uri(&d.next_hop(), transport));
            if let Some(target) = target {
                self.cancel_request(&req, &branch, target, now);
            }
        }
        if no_ack {
            self.error(format!("call {id}: no ACK for our 200 OK"));
            if let Some(c) = self.calls.get_mut(&id) {
                c.pending_ok = None;
            }
            self.bye(id, EndReason::Timeout, now);
        }
        if let Some(hold) = retry {
            let established = self
                .calls
                .get(&id)
                .is_some_and(|c| c.phase == Phase::Established);
            if established {
                self.send_reinvite(id, hold, now);
            } else if let Some(c) = self.calls.get_mut(&id) {
                c.reinvite_retry = None;
            }
        }
    }

    /// DTMF from the user: telephone-events in RTP when negotiated, SIP INFO otherwise.
    pub(super) fn send_dtmf(&mut self, id: CallId, digits: &str, now: Instant) {
        let digits = digits.trim().to_ascii_uppercase();
        if digits.is_empty() || !digits.chars().all(|c| "0123456789*#ABCD".contains(c)) {
            return self.error(format!("bad DTMF digits {digits:?}: use 0-9, *, #, A-D"));
        }
        let Some(call) = self.calls.get(&id) else {
            return self.error(format!("no call {id}"));
        };
        if call.phase != Phase::Established {
            return self.error(format!("call {id} is not established"));
        }
        let rfc4733 = call.negotiated.as_ref().is_some_and(|n| n.dtmf.is_some());
        if rfc4733 {
            self.out.push_back(Output::Dtmf { call: id, digits });
            return;
        }
        // No telephone-event agreed: one SIP INFO (application/dtmf-relay) per digit.
        for digit in digits.chars() {
            let Some(call) = self.calls.get_mut(&id) else {
                return;
            };
            let transport = call.target.transport;
            let Some(mut dialog) = call.dialog.take() else {
                return;
            };
            let target = Target::for_uri(&dialog.next_hop(), transport);
            let (mut req, branch) =
                self.in_dialog_skeleton(&mut dialog, Method::Info, None, &target);
            req.set_body(
                "application/dtmf-relay",
                format!("Signal={digit}\r\nDuration=160\r\n").into_bytes(),
            );
            if let Some(call) = self.calls.get_mut(&id) {
                call.dialog = Some(dialog);
            }
            self.start_client(req, &branch, target, Owner::Info, now);
        }
    }
}
