//! Registering accounts: REGISTER out, its responses in (the decisions live in `registration.rs`);
//! and the un-REGISTER of accounts a reconfiguration took out (`retiring`).

use super::*;

impl UserAgent {
    /// A REGISTER for `a` (Expires 0 while it un-registers) with the next CSeq, without
    /// credentials; and its Via branch.
    fn register_request(&self, a: &AccountEntry) -> (Message, String) {
        let transport = a.cfg.transport;
        let contact = self.contact_of(Some(a), transport);
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
        let (mut req, branch) = self.base_request(
            Method::Register,
            &ruri,
            &from,
            &aor,
            &a.reg.call_id,
            a.reg.cseq + 1,
            transport,
        );
        req.push_header("Contact", format!("<{contact}>"));
        if let Some(old) = &a.reg.stale_contact {
            req.push_header("Contact", format!("<{old}>;expires=0"));
        }
        req.push_header("Expires", expires.to_string());
        req.push_header("Allow", ALLOW);
        (req, branch)
    }

    /// Counts the CSeq `register_request` used, adds credentials, and makes `branch` the
    /// REGISTER in flight; returns the branch it replaces, whose transaction is to be dropped.
    fn sign_register(reg: &mut Registration, req: &mut Message, branch: &str) -> Option<String> {
        reg.cseq += 1;
        if reg.auth.has_challenges() {
            reg.auth.apply(req);
        }
        reg.next_at = None;
        reg.pending.replace(branch.to_string())
    }

    pub(super) fn send_register(&mut self, i: usize, now: Instant) {
        let (mut req, branch) = self.register_request(&self.accounts[i]);
        let a = &mut self.accounts[i];
        let replaced = Self::sign_register(&mut a.reg, &mut req, &branch);
        let (id, target) = (a.id, a.proxy.clone());
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
        if let Some(old) = replaced {
            self.client.remove(&tx_key(&old, &Method::Register));
        }
        self.start_client(req, &branch, target, Owner::Register(id), now);
    }

    pub(super) fn on_register_response(
        &mut self,
        id: AccountId,
        resp: Option<&Message>,
        now: Instant,
    ) {
        let Some(i) = self.account_index(id) else {
            return;
        };
        let contact = self.contact(Some(i), self.accounts[i].cfg.transport);
        let a = &mut self.accounts[i];
        let outcome = match resp {
            Some(r) => a.reg.on_response(r, &contact, now),
            None => a.reg.on_timeout(now),
        };
        let aor = a.aor.aor();
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

    /// Sends (again) the un-REGISTER of the retiring account `serial`.
    pub(super) fn send_unregister(&mut self, serial: u64, now: Instant) {
        let Some(a) = self.retiring.get(&serial) else {
            return;
        };
        let (mut req, branch) = self.register_request(a);
        let Some(a) = self.retiring.get_mut(&serial) else {
            return;
        };
        let replaced = Self::sign_register(&mut a.reg, &mut req, &branch);
        let target = a.proxy.clone();
        if let Some(old) = replaced {
            self.client.remove(&tx_key(&old, &Method::Register));
        }
        self.start_client(req, &branch, target, Owner::Unregister(serial), now);
    }

    /// A response to (or no response to) a retiring account's un-REGISTER. No event: the
    /// account's id already shows its new settings' state.
    pub(super) fn on_retired_response(
        &mut self,
        serial: u64,
        resp: Option<&Message>,
        now: Instant,
    ) {
        let Some(a) = self.retiring.get(&serial) else {
            return;
        };
        let contact = self.contact_of(Some(a), a.cfg.transport);
        let Some(a) = self.retiring.get_mut(&serial) else {
            return;
        };
        let outcome = match resp {
            Some(r) => a.reg.on_response(r, &contact, now),
            None => a.reg.on_timeout(now),
        };
        match outcome {
            RegOutcome::Nothing => {}
            RegOutcome::Resend => self.send_unregister(serial, now),
            RegOutcome::Unregistered
            | RegOutcome::Registered { .. }
            | RegOutcome::Failed { .. } => self.retired(serial, now),
        }
    }

    /// The retiring account `serial` is done; the account that waited for it registers now.
    fn retired(&mut self, serial: u64, now: Instant) {
        if let Some(a) = self.retiring.remove(&serial) {
            tracing::info!("{}: the previous settings' binding is gone", a.aor.aor());
        }
        let waiting: Vec<usize> = (0..self.accounts.len())
            .filter(|&i| self.accounts[i].after == Some(serial))
            .collect();
        for i in waiting {
            self.accounts[i].after = None;
            if self.accounts[i].cfg.register && self.quit_deadline.is_none() {
                self.send_register(i, now);
            }
        }
    }
}
