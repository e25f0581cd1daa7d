//! Outgoing calls: dial, INVITE with auth retry, provisional and final responses, CANCEL.

use super::*;

impl UserAgent {
    pub(super) fn dial(&mut self, input: &str, account: Option<AccountId>, now: Instant) {
        let (uri, idx) = match self.resolve_dial(input, account) {
            Ok(x) => x,
            Err(e) => return self.error(format!("cannot call: {e}")),
        };
        let (transport, target) = match idx {
            Some(i) => {
                let a = &self.accounts[i];
                let t = a.cfg.transport;
                let via_proxy =
                    !a.cfg.outbound_proxy.is_empty() || uri.host.eq_ignore_ascii_case(&a.aor.host);
                let target = if via_proxy {
                    a.proxy.clone()
                } else {
                    Target::for_uri(&uri, t)
                };
                (target.transport, target)
            }
            None => {
                let target = Target::for_uri(&uri, Transport::Udp);
                (target.transport, target)
            }
        };
        let from = match idx {
            Some(i) => {
                let a = &self.accounts[i];
                NameAddr {
                    display: (!a.cfg.display_name.is_empty()).then(|| a.cfg.display_name.clone()),
                    uri: Uri::parse(&a.aor.aor()).unwrap_or_else(|_| a.aor.clone()),
                    params: Vec::new(),
                }
            }
            None => NameAddr::new(Uri::sip(
                Some("dialtone"),
                &self.local_ip().to_string(),
                None,
            )),
        };
        let id = CallId(self.next_call);
        self.next_call += 1;
        let port = self.alloc_rtp_port();
        let mut media = self.local_media(port);
        let encryption = self.encryption_for(idx);
        if encryption.offers_srtp() {
            media.crypto = self.fresh_crypto();
            if media.crypto.is_empty() && encryption.mandatory() {
                return self.error(format!("cannot call {uri}: no SRTP keys"));
            }
        }
        let mut call = Call::new(
            id,
            Direction::Outgoing,
            idx.map(|i| self.accounts[i].id),
            uri.to_string(),
            target.clone(),
            media,
            now,
        );
        call.encryption = encryption;
        let from = from.with_tag(&call.local_tag);
        let to = NameAddr::new(uri.clone());
        let call_id = format!("{:016x}@{}", rand::random::<u64>(), self.local_ip());
        let (mut req, branch) = self.base_request(
            Method::Invite,
            &uri.to_string(),
            &from,
            &to,
            &call_id,
            1,
            transport,
        );
        if let Some(i) = idx {
            let a = &self.accounts[i];
            if let Some(proxy) = Target::parse(&a.cfg.outbound_proxy, a.cfg.transport) {
                let host = if proxy.host.contains(':') {
                    format!("[{}]", proxy.host)
                } else {
                    proxy.host.clone()
                };
                req.push_header(
                    "Route",
                    format!(
                        "<sip:{host}:{};transport={};lr>",
                        proxy.port, proxy.transport
                    ),
                );
            }
            call.auth = Some(ClientAuth::new(&a.user, &a.cfg.password));
        }
        req.push_header("Contact", format!("<{}>", self.contact(idx, transport)));
        req.push_header("Allow", ALLOW);
        let offer = sdp::create_offer(&call.local_media, &mut call.sdp, MediaDirection::SendRecv);
        req.set_body("application/sdp", offer.into_bytes());
        call.invite = Some(req.clone());
        call.invite_branch = Some(branch.clone());
        tracing::info!(call = %id, "calling {uri} via {target}");
        let event = call.event();
        self.calls.insert(id, call);
        self.emit(event);
        self.start_client(req, &branch, target, Owner::Invite(id), now);
    }

    pub(super) fn on_invite_response(&mut self, id: CallId, resp: Message, now: Instant) {
        let Some(code) = resp.status() else { return };
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        match code {
            100..=199 => {
                // Any provisional response, 100 included, allows a CANCEL (RFC 3261 9.1).
                call.provisional_seen = true;
                call.ring_deadline.get_or_insert(now + RING_LIMIT);
                if resp
                    .header("Content-Type")
                    .is_some_and(|t| t.contains("sdp"))
                    && !resp.body.is_empty()
                {
                    // Early media (183 with SDP): keep what was agreed for the media layer.
                    if let Some(n) = std::str::from_utf8(&resp.body)
                        .ok()
                        .and_then(|b| SessionDescription::parse(b).ok())
                        .and_then(|d| sdp::negotiate_answer(&call.local_media, &d).ok())
                    {
                        call.negotiated = Some(n);
                    }
                }
                let pending_cancel = call.cancel_pending;
                if code > 100
                    && let Some(e) = call.set_phase(Phase::Ringing, Some(code), now)
                {
                    self.emit(e);
                }
                if pending_cancel {
                    self.send_cancel(id, now);
                }
            }
            200..=299 => self.on_invite_ok(id, resp, now),
            401 | 407 => {
                let retry = if call.phase == Phase::Ended {
                    Err(crate::engine::sip::client_auth::AuthFailure::Rejected)
                } else {
                    call.auth
                        .as_mut()
                        .map(|a| a.on_challenge(&resp))
                        .unwrap_or(Err(
                            crate::engine::sip::client_auth::AuthFailure::NoCredentials,
                        ))
                };
                match retry {
                    Ok(()) => self.resend_invite_with_auth(id, now),
                    Err(why) => {
                        let msg = format!("call {id}: {}", why.describe());
                        self.error(msg);
                        self.end_call(id, EndReason::Error, Some(code), now);
                    }
                }
            }
            _ => {
                let reason = match code {
                    486 | 600 => EndReason::Busy,
                    603 => EndReason::Declined,
                    487 => EndReason::Cancelled,
                    408 | 480 => EndReason::Timeout,
                    _ => EndReason::Error,
                };
                self.end_call(id, reason, Some(code), now);
            }
        }
    }

    pub(super) fn resend_invite_with_auth(&mut self, id: CallId, now: Instant) {
        let branch = new_branch();
        let Some(transport) = self.calls.get(&id).map(|c| c.target.transport) else {
            return;
        };
        let via = self.via(transport, &branch);
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(mut req) = call.invite.clone() else {
            return;
        };
        let Ok((seq, _)) = req.cseq() else { return };
        req.remove_header("Via");
        req.push_top_header("Via", via);
        req.set_header("CSeq", format!("{} INVITE", seq + 1));
        if let Some(a) = call.auth.as_mut() {
            a.apply(&mut req);
        }
        call.invite = Some(req.clone());
        call.invite_branch = Some(branch.clone());
        call.provisional_seen = false;
        let target = call.target.clone();
        self.start_client(req, &branch, target, Owner::Invite(id), now);
    }

    pub(super) fn on_invite_ok(&mut self, id: CallId, resp: Message, now: Instant) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(invite) = call.invite.clone() else {
            return;
        };
        let Some(mut dialog) = Dialog::from_uac(&invite, &resp) else {
            tracing::warn!(call = %id, "2xx without the headers a dialog needs; ignored");
            return;
        };
        let seq = invite.cseq().map(|(n, _)| n).unwrap_or(1);
        let second_fork = call
            .dialog
            .as_ref()
            .is_some_and(|d| d.remote_tag != dialog.remote_tag);
        // ACK every 2xx, also a late one for a call we already gave up on.
        let ack_target = Target::for_uri(&dialog.next_hop(), call.target.transport);
        let (ack, _) = self.in_dialog_skeleton(&mut dialog, Method::Ack, Some(seq), &ack_target);
        let ack_bytes = ack.to_bytes();
        self.transmit(ack_target.clone(), ack_bytes.clone());
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if second_fork || call.phase == Phase::Ended {
            // A fork we do not want, or a call the user already hung up: end that dialog too.
            tracing::info!(call = %id, "ending an unwanted 2xx dialog with BYE");
            let keep = !second_fork;
            self.send_bye_on(&mut dialog, id, now);
            if keep && let Some(call) = self.calls.get_mut(&id) {
                // Kept so that a retransmission of this 2xx is ACKed again.
                call.dialog = Some(dialog);
                call.ack = Some((ack_bytes, ack_target));
            }
            return;
        }
        call.ack = Some((ack_bytes, ack_target));
        let negotiated = std::str::from_utf8(&resp.body)
            .ok()
            .filter(|b| !b.trim().is_empty())
            .ok_or_else(|| "the 200 OK has no SDP answer".to_string())
            .and_then(|b| SessionDescription::parse(b).map_err(|e| e.to_string()))
            .and_then(|d| sdp::negotiate_answer(&call.local_media, &d).map_err(|e| e.to_string()));
        call.dialog = Some(dialog);
        match negotiated.and_then(|n| call.apply_negotiated(n)) {
            Ok(()) => {
                if let Some(e) = call.set_phase(Phase::Established, Some(200), now) {
                    self.emit(e);
                }
            }
            Err(why) => {
                self.error(format!("call {id}: bad answer: {why}"));
                self.bye(id, EndReason::Error, now);
            }
        }
    }

    pub(super) fn send_cancel(&mut self, id: CallId, now: Instant) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        call.cancel_pending = false;
        call.cancel_deadline = Some(now + self.cfg.timers.timeout());
        let Some(inv) = call.invite.clone() else {
            return;
        };
        let Some(branch) = call.invite_branch.clone() else {
            return;
        };
        let target = call.target.clone();
        self.cancel_request(&inv, &branch, target, now);
    }

    /// CANCEL for a pending INVITE (9.1): same Request-URI, top Via, From, To, Call-ID, Route.
    pub(super) fn cancel_request(
        &mut self,
        inv: &Message,
        branch: &str,
        target: Target,
        now: Instant,
    ) {
        let mut cancel = Message::request(Method::Cancel, inv.request_uri().unwrap_or_default());
        for name in ["Via", "Route", "From", "To", "Call-ID"] {
            for h in inv.headers.iter().filter(|h| h.name == name) {
                if name == "Via" && cancel.header("Via").is_some() {
                    continue;
                }
                cancel.push_header(name, h.value.clone());
            }
        }
        let seq = inv.cseq().map(|(n, _)| n).unwrap_or(1);
        cancel.push_header("CSeq", format!("{seq} CANCEL"));
        cancel.push_header("Max-Forwards", "70");
        self.start_client(cancel, branch, target, Owner::Cancel, now);
    }
}
