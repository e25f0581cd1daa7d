//! New settings while running (`Command::Reconfigure`), the SIP side: call options apply from the
//! next call; accounts are compared by index (their `AccountId`). An unchanged account keeps its
//! registration; a changed one is un-registered (if it was, or was about to be, registered) and
//! started anew — after the un-REGISTER when both go to the same registrar, so the old binding's
//! removal cannot remove the new one; a removed one is un-registered; a new one registers if
//! `register` is on. Registration events follow, so a UI's account status stays right.
//!
//! The local address and the RTP port range belong to sockets the runtime bound at start: they
//! do not change here.

use super::*;

impl UserAgent {
    pub(super) fn reconfigure(&mut self, s: &Settings, now: Instant) {
        let mut entries = Vec::with_capacity(s.accounts.len());
        for (i, a) in s.accounts.iter().enumerate() {
            match AccountEntry::new(AccountId(i as u32), a) {
                Ok(e) => entries.push(e),
                Err(why) => return self.error(format!("settings not applied: {why}")),
            }
        }
        self.cfg.user_agent = s.user_agent.clone();
        self.cfg.auto_answer = s.auto_answer;
        self.cfg.codecs = s.codecs.clone();
        self.cfg.media_encryption = s.media_encryption;
        self.cfg.do_not_disturb = s.do_not_disturb;

        let removed: Vec<AccountId> = self
            .accounts
            .iter()
            .map(|a| a.id)
            .filter(|id| id.0 as usize >= entries.len())
            .collect();
        for id in removed {
            let Some(i) = self.account_index(id) else {
                continue;
            };
            let old = self.accounts.remove(i);
            tracing::info!("account {id} ({}) removed", old.aor.aor());
            let aor = old.aor.aor();
            self.retire(old, now);
            for c in self.calls.values_mut().filter(|c| c.account == Some(id)) {
                c.account = None;
            }
            self.emit(Event::Registration {
                account: id,
                aor,
                state: RegistrationState::Unregistered,
                code: None,
                reason: None,
            });
        }

        for entry in entries {
            let i = match self.account_index(entry.id) {
                Some(i) if self.accounts[i].cfg == entry.cfg => continue,
                Some(i) => {
                    tracing::info!("account {} changed", entry.id);
                    let old = std::mem::replace(&mut self.accounts[i], entry);
                    let same_registrar = old.proxy == self.accounts[i].proxy;
                    // It may itself have waited for an older binding to go.
                    let waited = old.after;
                    let serial = self.retire(old, now).or(waited);
                    self.accounts[i].after = serial.filter(|_| same_registrar);
                    i
                }
                None => {
                    tracing::info!("account {} added", entry.id);
                    let at = self
                        .accounts
                        .iter()
                        .position(|a| a.id > entry.id)
                        .unwrap_or(self.accounts.len());
                    self.accounts.insert(at, entry);
                    at
                }
            };
            self.start_account(i, now);
        }
    }

    /// A new or changed account: registers (at once, or once the old binding is gone), or says
    /// it is not registered.
    fn start_account(&mut self, i: usize, now: Instant) {
        let a = &mut self.accounts[i];
        let state = match (a.cfg.register, a.after) {
            (true, None) => return self.send_register(i, now),
            (true, Some(_)) => RegistrationState::Registering,
            (false, _) => RegistrationState::Unregistered,
        };
        a.reg.state = state;
        let e = Event::Registration {
            account: a.id,
            aor: a.aor.aor(),
            state,
            code: None,
            reason: None,
        };
        self.emit(e);
    }

    /// Takes an account's registration down: its REGISTER in flight is forgotten and, if it was
    /// (or was about to be) registered, an un-REGISTER goes out. Returns that un-REGISTER's
    /// retiring serial.
    fn retire(&mut self, mut old: AccountEntry, now: Instant) -> Option<u64> {
        let bound = old.reg.state == RegistrationState::Registered || old.reg.pending.is_some();
        if let Some(branch) = old.reg.pending.take() {
            self.client.remove(&tx_key(&branch, &Method::Register));
        }
        if !bound {
            return None;
        }
        old.reg.unregistering = true;
        old.reg.next_at = None;
        let serial = self.next_retiring;
        self.next_retiring += 1;
        self.retiring.insert(serial, old);
        self.send_unregister(serial, now);
        Some(serial)
    }
}
