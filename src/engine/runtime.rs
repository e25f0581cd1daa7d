//! The I/O loop: the only place that waits. It feeds the user agent commands, packets and the
//! time, and carries out what comes back (send bytes, hand events to the UI).

use super::device_watch::DeviceWatch;
use super::media::devices::{InputSpec, OutputSpec};
use super::media::engine::MediaEngine;
use super::media_net::MediaNet;
use super::net::{Net, NetEvent};
use super::sip::ua::{Config, Output, UserAgent};
use super::{EngineError, Waker};
use crate::api::{Command, Event};
use crate::store::settings::Settings;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

pub async fn run(
    mut settings: Settings,
    mut commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<Event>,
    waker: Option<Waker>,
    ready: std::sync::mpsc::Sender<Result<SocketAddr, EngineError>>,
) {
    let mut net = match Net::bind(&settings).await {
        Ok(n) => n,
        Err(e) => {
            let _ = ready.send(Err(e.into()));
            return;
        }
    };
    let cfg = match Config::from_settings(&settings, net.advertised()) {
        Ok(c) => c,
        Err(e) => {
            let _ = ready.send(Err(EngineError::Settings(e)));
            return;
        }
    };
    // The audio devices are opened here, once, before any call: every call is fed from them.
    let (input, output) = match (
        InputSpec::parse(&settings.audio_in),
        OutputSpec::parse(&settings.audio_out),
    ) {
        (Ok(i), Ok(o)) => (i, o),
        (Err(e), _) | (_, Err(e)) => {
            let _ = ready.send(Err(EngineError::Settings(e.to_string())));
            return;
        }
    };
    // Ready before the devices open: a real microphone can take a second to deliver its first
    // audio, and the window must not wait for it. Commands queue until the loop runs.
    let _ = ready.send(Ok(net.advertised()));
    let (mut engine, device_errors) = MediaEngine::open(input, output, settings.audio_processing);
    let ring_errors = super::reconfigure::open_ring(&settings, &mut engine);
    let bind_ip = settings
        .listen_addr()
        .map(|a| a.ip())
        .unwrap_or_else(|_| net.advertised().ip());
    let mut media = MediaNet::new(engine, bind_ip);
    // Hot-plug: device changes are noticed off the I/O loop and applied here.
    let mut watch = DeviceWatch::new();
    for e in device_errors {
        let _ = events.send(Event::Error {
            message: format!("audio: {e}"),
        });
    }
    for e in ring_errors {
        let _ = events.send(e);
    }
    let mut ua = UserAgent::new(cfg, &settings.accounts);
    ua.start(Instant::now());
    let mut commands_open = true;
    loop {
        flush(&mut ua, &mut net, &mut media, &events, waker.as_ref()).await;
        if ua.is_stopped() {
            break;
        }
        watch.ensure_running(&media.engine);
        watch.dispatch(&mut media.engine);
        media.sync_clock();
        let deadline = ua
            .next_deadline()
            .map(tokio::time::Instant::from_std)
            .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            cmd = commands.recv(), if commands_open => {
                match cmd {
                    // Devices are the media edge's business; the SIP side never hears of them.
                    Some(Command::SetAudioInput { spec }) => {
                        let r = InputSpec::parse(&spec).and_then(|s| media.engine.switch_input(s));
                        match r {
                            Ok(()) => settings.audio_in = spec,
                            Err(e) => {
                                let _ = events.send(Event::Error { message: format!("audio input: {e}") });
                            }
                        }
                    }
                    Some(Command::SetAudioOutput { spec }) => {
                        let r = OutputSpec::parse(&spec).and_then(|s| media.engine.switch_output(s));
                        match r {
                            Ok(()) => settings.audio_out = spec,
                            Err(e) => {
                                let _ = events.send(Event::Error { message: format!("audio output: {e}") });
                            }
                        }
                    }
                    Some(Command::ListDevices) => {
                        // Enumerating can take a while on some hosts: off the I/O loop.
                        let events = events.clone();
                        let waker = waker.clone();
                        tokio::task::spawn_blocking(move || {
                            let (inputs, outputs) = crate::engine::media::devices::list_devices();
                            let _ = events.send(Event::Devices { inputs, outputs });
                            if let Some(w) = waker {
                                w();
                            }
                        });
                    }
                    Some(Command::Reconfigure { settings: new }) => {
                        let errors = super::reconfigure::apply(
                            &mut settings, *new, &mut media, &mut ua, Instant::now(),
                        );
                        for e in errors {
                            let _ = events.send(e);
                        }
                        if let Some(w) = &waker {
                            w();
                        }
                    }
                    Some(Command::MonitorInput { on }) => media.set_monitor(on),
                    Some(Command::PlayTestTone { ring }) => media.play_test_tone(ring),
                    Some(c) => ua.handle_command(c, Instant::now()),
                    None => {
                        // Every handle is gone: stop cleanly.
                        commands_open = false;
                        ua.handle_command(Command::Quit, Instant::now());
                    }
                }
            }
            ev = net.events.recv() => {
                let Some(ev) = ev else { break };
                match ev {
                    NetEvent::Packet { transport, source, bytes } => {
                        ua.handle_packet(transport, source, &bytes, Instant::now());
                    }
                    NetEvent::Connected { key, writer } => net.connection_up(key, writer),
                    NetEvent::Closed { key } => {
                        // No response can come on a closed connection (the server died, or
                        // closed it): fail what waits on it now, not at timer B/F 32 s later.
                        for target in net.connection_closed(&key) {
                            let why = "the connection closed";
                            ua.handle_transport_error(&target, why, Instant::now());
                        }
                    }
                    NetEvent::Failed { target, why } => {
                        ua.handle_transport_error(&target, &why, Instant::now());
                    }
                }
            }
            _ = tokio::time::sleep_until(deadline) => ua.handle_timeout(Instant::now()),
            ev = watch.recv() => {
                let produced = watch.handle(ev, &mut media.engine);
                if !produced.is_empty() {
                    for e in produced {
                        let _ = events.send(e);
                    }
                    if let Some(w) = &waker {
                        w();
                    }
                }
            }
            _ = media.clock.tick(), if media.engine.active() => {
                let produced = media.tick();
                // Meters alone do not wake the UI: it polls them at its own pace (a window that
                // shows meters repaints a few times a second), so 10 level events a second do not
                // cost 10 redraws. Anything else (a DTMF digit received, an error) wakes it at once.
                let urgent = produced.iter().any(|e| !matches!(e, Event::Levels { .. }));
                for e in produced {
                    let _ = events.send(e);
                }
                if urgent && let Some(w) = &waker {
                    w();
                }
            }
        }
    }
    tracing::info!("engine stopped");
}

async fn flush(
    ua: &mut UserAgent,
    net: &mut Net,
    media: &mut MediaNet,
    events: &mpsc::UnboundedSender<Event>,
    waker: Option<&Waker>,
) {
    let mut woke = false;
    while let Some(out) = ua.poll_output() {
        match out {
            Output::Transmit { target, bytes } => {
                if tracing::enabled!(tracing::Level::DEBUG) {
                    let first = bytes.split(|b| *b == b'\r').next().unwrap_or_default();
                    tracing::debug!("-> {} to {target}", String::from_utf8_lossy(first));
                }
                if let Err(why) = net.send(&target, bytes).await {
                    ua.handle_transport_error(&target, &why, Instant::now());
                }
            }
            Output::Event(Event::Stats { mut calls, .. }) => {
                // The SIP side knows the calls, the media side their RTP figures and the devices.
                for c in &mut calls {
                    c.media = media.engine.call_stats(c.call);
                }
                let devices = Some(media.engine.device_stats());
                let _ = events.send(Event::Stats { calls, devices });
                woke = true;
            }
            Output::Event(e) => {
                let _ = events.send(e);
                woke = true;
            }
            Output::Media { call, params } => {
                if let Err(message) = media.set_call(call, params) {
                    let _ = events.send(Event::Error { message });
                    woke = true;
                }
            }
            Output::MediaStop { call } => media.stop_call(call),
            Output::Alerts { ringback, ring } => media.set_alerts(ringback, ring),
            Output::Dtmf { call, digits } => {
                if let Err(why) = media.engine.send_dtmf(call, &digits) {
                    let _ = events.send(Event::Error {
                        message: format!("call {call}: cannot send DTMF: {why}"),
                    });
                    woke = true;
                }
            }
        }
    }
    if woke && let Some(w) = waker {
        w();
    }
}
