//! `dialtone --headless`: the engine without a window. Events go to stdout as one JSON object per
//! line; commands come from stdin, one per line. For scripting, kiosks, auto-answer intercoms and
//! the end-to-end tests.
//!
//! Commands: `call URI [ACCOUNT]`, `answer [ID]`, `reject [ID]`, `decline [ID]`, `hangup [ID]`,
//! `hold ID`, `resume ID`, `dtmf [ID] DIGITS`, `audio-in SPEC`, `audio-out SPEC`,
//! `devices`, `register [ACCOUNT]`, `reconfigure FILE`, `monitor on|off`, `test-tone [ring]`,
//! `stats`, `quit`. Without an ID, `answer`/`reject` take the newest ringing incoming call and
//! `hangup` the newest live call.

use crate::api::{AccountId, CallId, CallState, Command, Event};
use crate::echo::EchoService;
use crate::engine::Engine;
use crate::store::settings::Settings;
use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;
use tokio::io::AsyncBufReadExt;

/// What the front-end knows about calls, to fill in default IDs.
#[derive(Default)]
struct Calls {
    live: BTreeMap<CallId, CallState>,
    ringing_in: Vec<CallId>,
}

impl Calls {
    fn apply(&mut self, e: &Event) {
        match e {
            Event::Incoming { call, .. } => self.ringing_in.push(*call),
            Event::Call { call, state, .. } => {
                if *state == CallState::Ended {
                    self.live.remove(call);
                } else {
                    self.live.insert(*call, *state);
                }
                if *state != CallState::Ringing {
                    self.ringing_in.retain(|c| c != call);
                }
            }
            _ => {}
        }
    }
}

/// Parses one command line. `Err` carries the message for an `error` event.
fn parse_command(line: &str, calls: &Calls) -> Result<Option<Command>, String> {
    let mut words = line.split_whitespace();
    let Some(verb) = words.next() else {
        return Ok(None);
    };
    let arg = words.next();
    if words.next().is_some() && !["call", "dtmf", "reconfigure"].contains(&verb) {
        return Err(format!("too many arguments: {line:?}"));
    }
    let id = |arg: Option<&str>, default: Option<CallId>| -> Result<CallId, String> {
        match arg {
            Some(a) => a
                .parse::<u64>()
                .map(CallId)
                .map_err(|_| format!("bad call id {a:?}")),
            None => default.ok_or_else(|| format!("{verb}: no call to act on; give an ID")),
        }
    };
    let newest_ringing = calls.ringing_in.last().copied();
    let newest_live = calls.live.keys().next_back().copied();
    let cmd = match verb.to_ascii_lowercase().as_str() {
        "call" | "dial" => {
            let uri = arg.ok_or("call: missing URI")?.to_string();
            let account = match line.split_whitespace().nth(2) {
                Some(a) => Some(AccountId(
                    a.parse().map_err(|_| format!("bad account {a:?}"))?,
                )),
                None => None,
            };
            Command::Call { uri, account }
        }
        "answer" | "accept" => Command::Answer {
            call: id(arg, newest_ringing)?,
        },
        "reject" => Command::Reject {
            call: id(arg, newest_ringing)?,
            decline: false,
        },
        "decline" => Command::Reject {
            call: id(arg, newest_ringing)?,
            decline: true,
        },
        "hangup" | "bye" => Command::Hangup {
            call: id(arg, newest_live)?,
        },
        "mute" => Command::Mute {
            call: id(arg, newest_live)?,
            muted: true,
        },
        "unmute" => Command::Mute {
            call: id(arg, newest_live)?,
            muted: false,
        },
        "hold" => Command::Hold {
            call: id(arg, None)?,
        },
        "resume" | "unhold" => Command::Resume {
            call: id(arg, None)?,
        },
        "register" => Command::Register {
            account: AccountId(
                arg.unwrap_or("0")
                    .parse()
                    .map_err(|_| format!("bad account {arg:?}"))?,
            ),
        },
        "dtmf" => {
            // `dtmf ID DIGITS`, or `dtmf DIGITS` for the newest live call.
            let rest: Vec<&str> = line.split_whitespace().skip(1).collect();
            let (call, digits) = match rest.as_slice() {
                [digits] => (id(None, newest_live)?, digits.to_string()),
                [call, digits] => (id(Some(call), None)?, digits.to_string()),
                _ => return Err("dtmf: want `dtmf [ID] DIGITS`".into()),
            };
            Command::Dtmf { call, digits }
        }
        "audio-in" => Command::SetAudioInput {
            spec: arg
                .ok_or(
                    "audio-in: want a source (default, device:NAME, tone:HZ, wav:FILE, silence)",
                )?
                .to_string(),
        },
        "audio-out" => Command::SetAudioOutput {
            spec: arg
                .ok_or("audio-out: want a sink (default, device:NAME, wav:FILE, null)")?
                .to_string(),
        },
        "devices" => Command::ListDevices,
        "reconfigure" => {
            // The whole rest of the line is the file name (it may hold spaces).
            let path = line.trim_start()[verb.len()..].trim();
            if path.is_empty() {
                return Err("reconfigure: want a settings file".into());
            }
            let path = std::path::Path::new(path);
            // `Settings::load` takes a missing file for the defaults; here it is a mistake.
            if !path.is_file() {
                return Err(format!("reconfigure: no settings file {}", path.display()));
            }
            let settings = Settings::load(path).map_err(|e| e.to_string())?;
            Command::Reconfigure {
                settings: Box::new(settings),
            }
        }
        "monitor" => Command::MonitorInput {
            on: match arg {
                Some("on") => true,
                Some("off") => false,
                _ => return Err("monitor: want `monitor on` or `monitor off`".into()),
            },
        },
        "test-tone" => Command::PlayTestTone {
            ring: match arg {
                None => false,
                Some("ring") => true,
                Some(other) => return Err(format!("test-tone: unknown {other:?} (try `ring`)")),
            },
        },
        "stats" => Command::Stats,
        "quit" | "exit" => Command::Quit,
        other => return Err(format!("unknown command {other:?}")),
    };
    Ok(Some(cmd))
}

fn print_event(out: &mut impl Write, e: &Event) {
    match serde_json::to_string(e) {
        Ok(line) => {
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
        Err(err) => tracing::error!("cannot serialise event {e:?}: {err}"),
    }
}

pub struct HeadlessOptions {
    pub call: Option<String>,
    /// Print `levels` events (10 per second during calls); off by default to keep output quiet.
    pub levels: bool,
    pub duration: Option<Duration>,
    /// Start the built-in echo service and call it (hear your own microphone).
    pub echo_test: bool,
}

/// Runs until `quit`, the duration, or a signal; returns the process exit code.
pub fn run(settings: Settings, opts: HeadlessOptions) -> i32 {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("dialtone: cannot start: {e}");
            return 1;
        }
    };
    let code = rt.block_on(async move {
        let (engine, mut events) = match Engine::spawn(settings, None) {
            Ok(x) => x,
            Err(e) => {
                let mut out = std::io::stdout();
                print_event(
                    &mut out,
                    &Event::Error {
                        message: e.to_string(),
                    },
                );
                eprintln!("dialtone: {e}");
                return 1;
            }
        };
        if let Some(uri) = opts.call {
            engine.send(Command::Call { uri, account: None });
        }
        // Kept until the end: dropping it stops the echo engine.
        let echo = if opts.echo_test {
            match EchoService::spawn() {
                Ok(echo) => {
                    engine.send(Command::Call {
                        uri: echo.uri(),
                        account: None,
                    });
                    Some(echo)
                }
                Err(e) => {
                    let message = format!("echo test: {e}");
                    print_event(&mut std::io::stdout(), &Event::Error { message });
                    None
                }
            }
        } else {
            None
        };
        let mut stdin = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        let mut stdin_open = true;
        let mut calls = Calls::default();
        let mut out = std::io::stdout();
        let stop_at = opts.duration.map(|d| tokio::time::Instant::now() + d);
        let mut quitting = false;
        let mut sigterm =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        loop {
            let until_stop = async {
                match stop_at {
                    Some(t) if !quitting => tokio::time::sleep_until(t).await,
                    _ => std::future::pending().await,
                }
            };
            let term = async {
                match sigterm.as_mut() {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                ev = events.recv() => {
                    let Some(ev) = ev else { break };
                    calls.apply(&ev);
                    if opts.levels || !matches!(ev, Event::Levels { .. }) {
                        print_event(&mut out, &ev);
                    }
                    if ev == Event::Stopped {
                        break;
                    }
                }
                line = stdin.next_line(), if stdin_open => match line {
                    Ok(Some(line)) => match parse_command(&line, &calls) {
                        Ok(Some(cmd)) => {
                            quitting |= cmd == Command::Quit;
                            engine.send(cmd);
                        }
                        Ok(None) => {}
                        Err(message) => print_event(&mut out, &Event::Error { message }),
                    },
                    // End of input is not a quit: an intercom runs with stdin closed.
                    Ok(None) | Err(_) => stdin_open = false,
                },
                _ = until_stop => {
                    quitting = true;
                    engine.send(Command::Quit);
                }
                _ = tokio::signal::ctrl_c() => {
                    quitting = true;
                    engine.send(Command::Quit);
                }
                _ = term => {
                    quitting = true;
                    engine.send(Command::Quit);
                }
            }
        }
        // The engine thread ends after `Stopped`; joining it is quick.
        tokio::task::spawn_blocking(move || {
            engine.shutdown();
            drop(echo);
        })
        .await
        .ok();
        0
    });
    // tokio reads stdin with a blocking read on a pool thread that cannot be cancelled; dropping
    // the runtime would wait for it, i.e. for the next input line, after `quit` or at the end of
    // `--duration`. Nothing else runs on the pool: leave that thread behind.
    rt.shutdown_background();
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse_with_default_ids() {
        let mut calls = Calls::default();
        calls.apply(&Event::Incoming {
            call: CallId(4),
            from: "x".into(),
            account: None,
        });
        calls.apply(&Event::Call {
            call: CallId(4),
            state: CallState::Ringing,
            peer: "x".into(),
            reason: None,
            code: None,
            hold: None,
        });
        assert_eq!(
            parse_command("answer", &calls).unwrap(),
            Some(Command::Answer { call: CallId(4) })
        );
        assert_eq!(
            parse_command("call sip:bob@127.0.0.1 1", &calls).unwrap(),
            Some(Command::Call {
                uri: "sip:bob@127.0.0.1".into(),
                account: Some(AccountId(1))
            })
        );
        assert_eq!(parse_command("   ", &calls).unwrap(), None);
    }

    #[test]
    fn bad_commands_are_errors_not_crashes() {
        let calls = Calls::default();
        for bad in [
            "frobnicate",
            "hold",
            "hold x",
            "hangup",
            "call",
            "answer 1 2",
            "register z",
            "monitor",
            "monitor maybe",
            "test-tone loud",
            "reconfigure",
            "reconfigure /nonexistent/settings.toml",
        ] {
            assert!(parse_command(bad, &calls).is_err(), "{bad:?}");
        }
    }
}
