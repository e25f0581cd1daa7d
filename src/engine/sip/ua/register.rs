//! Registering accounts: REGISTER out, its responses in (the decisions live in `registration.rs`).

use super::*;

impl UserAgent {
    pub(super) fn send_register(&mut self, i: usize, now: Instant) {
        let a = &self.accounts[i];
        let transport = a.cfg.transport;
        let contact = self.contact(Some(i), transport);
        let ruri = {
            let mut u = Uri::sip(None, &a.aor.host, a.aor.port);
            u.scheme = a.aor.scheme.clone();
            u.to_string()
        };
        let aor = NameAddr {
            display: (!a.cfg.display_name.is_empty()).then(|| a.cfg.display_name.clone()),
            uri: Uri::parse(&a.aor.aor()).unwrap_or_else(|_| a.aor.clone()),
            params: Vec::new(),
        };
        let from = aor.clone().with_tag(&a.reg.from_tag);
        let expires = if a.reg.unregistering {
            0
        } else {
            a.reg.expires
        };
        let (call_id, cseq, target) = (a.reg.call_id.clone(), a.reg.cseq + 1, a.proxy.clone());
        let stale = a.reg.stale_contact.clone();
        let (mut req, branch) = self.base_request(
            Method::Register,
            &ruri,
            &from,
            &aor,
            &call_id,
            cseq,
            transport,
        );
        req.push_header("Contact", format!("<{contact}>"));
        if let Some(old) = stale {
            req.push_header("Contact", format!("<{old}>;expires=0"));
        }
        req.push_header("Expires", expires.to_string());
        req.push_header("Allow", ALLOW);
        let a = &mut self.accounts[i];
        a.reg.cseq = cseq;
        if a.reg.auth.has_challenges() {
            a.reg.auth.apply(&mut req);
        }
        if let Some(old) = a.reg.pending.take() {
            self.client.remove(&tx_key(&old, &Method::Register));
        }
        let a = &mut self.accounts[i];
        a.reg.pending = Some(branch.clone());
        a.reg.next_at = None;
        let announce = !a.reg.unregistering && a.reg.state != RegistrationState::Registered;
        if announce && a.reg.state != RegistrationState::Registering {
            a.reg.state = RegistrationState::Registering;
            let e = Event::Registration {
                account: a.id,
                aor: a.aor.aor(),
                state: RegistrationState::Registering,
                code: None,
                reason: None,
            };
            self.emit(e);
        }
        self.start_client(req, &branch, target, Owner::Register(i), now);
    }

    pub(super) fn on_register_response(&mut self, i: usize, resp: Option<&Message>, now: Instant) {
        let contact = self.contact(Some(i), self.accounts[i].cfg.transport);
        let a = &mut self.accounts[i];
        let outcome = match resp {
            Some(r) => a.reg.on_response(r, &contact, now),
            None => a.reg.on_timeout(now),
        };
        let (id, aor) = (a.id, a.aor.aor());
        let event = |state, code, reason| Event::Registration {
            account: id,
            aor: aor.clone(),
            state,
            code,
            reason,
        };
        match outcome {
            RegOutcome::Nothing => {}
            RegOutcome::Resend => self.send_register(i, now),
            RegOutcome::Registered { expires } => {
                tracing::info!("{aor} registered for {expires} s");
                self.emit(event(RegistrationState::Registered, Some(200), None));
            }
            RegOutcome::Unregistered => {
                let code = resp.and_then(Message::status);
                self.emit(event(RegistrationState::Unregistered, code, None));
            }
            RegOutcome::Failed { code, reason } => {
                tracing::warn!("{aor} registration failed: {reason}");
                self.emit(event(RegistrationState::Failed, code, Some(reason)));
            }
        }
    }
}
