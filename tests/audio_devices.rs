//! The real device path (cpal's PulseAudio host) against a private PulseAudio server with a null
//! sink (tests/common/pulse.rs): what Dialtone plays to the default output comes back on the
//! default input (the sink's monitor). Needs the `pulseaudio` and `pulseaudio-utils` packages;
//! without them the tests fail, they never skip.

mod common;

use common::pulse::Pulse;
use dialtone::api::{CallState, Command, DeviceStats, Event, MediaStats};
use dialtone::engine::Engine;
use dialtone::engine::media::cpal_device::{CpalSink, CpalSource};
use dialtone::engine::media::devices::{
    AudioSink, AudioSource, FRAME_SAMPLES, HUB_RATE, InputSpec, list_devices, open_source,
};
use dialtone::engine::media::tone::{ToneGenerator, dominant_tone};
use dialtone::engine::media::wav::read_wav;
use dialtone::store::settings::Settings;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedReceiver;

const CANDIDATES: [f32; 3] = [300.0, 440.0, 1000.0];

/// The share of 100 ms blocks of `samples` (48 kHz) where 440 Hz dominates above -20 dBFS. Blocks,
/// not the whole: a real device on a loaded 2-core machine may glitch once (a gap or a skip breaks
/// the phase a whole-second detector relies on), which must not fail the test.
fn share_of_440(samples: &[i16]) -> f64 {
    let blocks: Vec<_> = samples.chunks_exact(4_800).collect();
    let hits = blocks
        .iter()
        .filter(|b| matches!(dominant_tone(b, HUB_RATE, &CANDIDATES), Some((f, db)) if f == 440.0 && db > -20.0))
        .count();
    hits as f64 / blocks.len().max(1) as f64
}

/// Plays a 440 Hz tone to `sink` in 20 ms frames, paced by the clock, until `stop`.
fn play_tone(mut sink: CpalSink, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut tone = ToneGenerator::new(440.0, -10.0, HUB_RATE);
        let mut frame = [0i16; FRAME_SAMPLES];
        let start = Instant::now();
        let mut n = 0u32;
        while !stop.load(Ordering::Relaxed) {
            tone.fill(&mut frame);
            sink.write(&frame).expect("the sink plays");
            n += 1;
            let next = start + Duration::from_millis(20) * n;
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
        }
        println!("output latency {:?}", sink.latency());
        sink.xruns()
    })
}

/// Reads `frames` 20 ms frames from `source`, paced by the clock as the hub reads, calling
/// `after` with each frame's number (from 1) once it is read; returns the samples.
fn capture_paced(source: &mut CpalSource, frames: u32, mut after: impl FnMut(u32)) -> Vec<i16> {
    let mut captured = Vec::new();
    let mut frame = [0i16; FRAME_SAMPLES];
    let start = Instant::now();
    for n in 1..=frames {
        source.read(&mut frame).expect("the source reads");
        captured.extend_from_slice(&frame);
        after(n);
        let next = start + Duration::from_millis(20) * n;
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    captured
}

#[test]
fn a_tone_played_to_the_default_output_is_captured_from_the_default_input() {
    let _pulse = Pulse::start();
    let (inputs, outputs) = list_devices();
    assert!(
        inputs.iter().any(|d| d.contains("loop.monitor")),
        "{inputs:?}"
    );
    assert!(outputs.iter().any(|d| d.contains("loop")), "{outputs:?}");
    let e = open_source(&InputSpec::Device("no such microphone".into()))
        .err()
        .expect("an unknown device is refused");
    assert!(
        e.to_string().contains("loop.monitor"),
        "the error lists the devices: {e}"
    );

    let sink = CpalSink::open(None).expect("the default output opens");
    assert!(sink.label().contains("loop"), "{}", sink.label());
    let mut source = CpalSource::open(Some("LOOP.monitor")).expect("device:NAME opens");
    assert!(
        source.label().contains("loop.monitor"),
        "{}",
        source.label()
    );

    let stop = Arc::new(AtomicBool::new(false));
    let player = play_tone(sink, stop.clone());
    let captured = capture_paced(&mut source, 75, |_| {});
    // What the echo canceller's delay hint is made of: the device's latency and the ring's.
    let latency = source.latency();
    println!("input latency {latency:?}");
    assert!(
        (Duration::from_millis(10)..=Duration::from_millis(500)).contains(&latency),
        "{latency:?}"
    );
    stop.store(true, Ordering::Relaxed);
    let sink_xruns = player.join().unwrap();
    println!("xruns: sink {sink_xruns}, source {}", source.xruns());

    // The last second (the first half second covers start-up and the cushions).
    let tail = &captured[captured.len() - HUB_RATE as usize..];
    let share = share_of_440(tail);
    println!(
        "captured {} samples; 440 Hz in {:.0}% of the last second's blocks; whole: {:?}",
        captured.len(),
        share * 100.0,
        dominant_tone(tail, HUB_RATE, &CANDIDATES)
    );
    assert!(
        share >= 0.7,
        "440 Hz in only {:.0}% of the blocks",
        share * 100.0
    );
}

/// The threads of this process named `name`, by thread id.
fn threads_named(name: &str) -> Vec<i32> {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task lists the threads")
        .filter_map(|t| {
            let t = t.ok()?;
            let comm = std::fs::read_to_string(t.path().join("comm")).ok()?;
            (comm.trim_end() == name).then(|| t.file_name().to_str()?.parse().ok())?
        })
        .collect()
}

extern "C" fn ignore_signal(_: libc::c_int) {}

#[test]
fn signals_to_the_audio_threads_do_not_end_their_sound_server_connection() {
    // A handled signal interrupts a blocking wait (epoll_wait is never restarted): the sound
    // server's reader thread took that for a lost connection, and microphone and speaker fell
    // silent until re-opened. The app handles SIGINT and SIGTERM, and any thread may get them.
    let _pulse = Pulse::start();
    let sink = CpalSink::open(None).expect("the default output opens");
    let mut source = CpalSource::open(None).expect("the default input opens");
    // SAFETY: a handler that does nothing, installed without SA_RESTART.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = ignore_signal as extern "C" fn(libc::c_int) as usize;
        libc::sigemptyset(&mut action.sa_mask);
        assert_eq!(
            libc::sigaction(libc::SIGUSR1, &action, std::ptr::null_mut()),
            0
        );
    }
    let audio_threads = threads_named("dialtone-audio");
    assert!(audio_threads.len() >= 2, "{audio_threads:?}");
    let stop = Arc::new(AtomicBool::new(false));
    let player = play_tone(sink, stop.clone());
    let mut signalled = 0;
    let captured = capture_paced(&mut source, 100, |n| {
        // For a second after the first: each audio thread, every other frame.
        if (25..75).contains(&n) && n % 2 == 0 {
            for &tid in &threads_named("dialtone-audio") {
                // SAFETY: tgkill with this process's id and one of its threads' ids.
                unsafe {
                    libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, libc::SIGUSR1);
                }
                signalled += 1;
            }
        }
    });
    stop.store(true, Ordering::Relaxed);
    player.join().unwrap();
    // The last second: still the tone, played and captured over the same connection.
    let tail = &captured[captured.len() - HUB_RATE as usize..];
    let share = share_of_440(tail);
    println!(
        "{signalled} signals to {} audio threads; 440 Hz in {:.0}% of the last second's blocks",
        audio_threads.len(),
        share * 100.0
    );
    assert!(
        share >= 0.7,
        "440 Hz in only {:.0}% of the blocks after the signals",
        share * 100.0
    );
}

/// Plugs in a null sink named `name` (a new output, and its monitor a new input) and waits for
/// the engine to announce the devices by itself; returns them (inputs, outputs).
fn plug_null_sink(
    pulse: &Pulse,
    ev: &mut UnboundedReceiver<Event>,
    name: &str,
) -> (Vec<String>, Vec<String>) {
    let plugged = Instant::now();
    pulse
        .pactl(&[
            "load-module",
            "module-null-sink",
            &format!("sink_name={name}"),
            &format!("sink_properties=device.description={name}"),
        ])
        .expect("a new device");
    let Event::Devices { inputs, outputs } = wait_for(ev, "a devices event", |e| {
        matches!(e, Event::Devices { .. })
    }) else {
        unreachable!("wait_for returns what matched")
    };
    println!("{name} announced {:?} after the plug", plugged.elapsed());
    (inputs, outputs)
}

fn wait_for(rx: &mut UnboundedReceiver<Event>, what: &str, pred: impl Fn(&Event) -> bool) -> Event {
    let t = Duration::from_secs(10);
    let deadline = Instant::now() + t;
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        match rx.try_recv() {
            Ok(e) if pred(&e) => return e,
            Ok(e) => seen.push(e),
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    panic!("no {what} within {t:?}; seen: {seen:#?}");
}

fn is_established(e: &Event) -> bool {
    matches!(
        e,
        Event::Call {
            state: CallState::Established,
            ..
        }
    )
}

#[test]
fn the_default_microphone_feeds_a_call() {
    let pulse = Pulse::start();
    let dir = tempfile::tempdir().unwrap();
    let b_wav = dir.path().join("b.wav");
    let base = 33000 + (std::process::id() % 100) as u16 * 40;
    let settings = |audio_in: &str, audio_out: String, ports: u16, auto_answer| Settings {
        listen: "127.0.0.1:0".into(),
        rtp_ports: format!("{ports}-{}", ports + 19),
        audio_in: audio_in.into(),
        audio_out,
        auto_answer,
        ..Settings::default()
    };
    // A captures the default input (the null sink's monitor); B records what it receives.
    let (a, mut a_ev) =
        Engine::spawn(settings("default", "null".into(), base, false), None).expect("A starts");
    let (b, mut b_ev) = Engine::spawn(
        settings(
            "silence",
            format!("wav:{}", b_wav.display()),
            base + 20,
            true,
        ),
        None,
    )
    .expect("B starts");
    // Something plays a tone into the null sink, as a person would speak into a microphone.
    let stop = Arc::new(AtomicBool::new(false));
    let player = play_tone(
        CpalSink::open(None).expect("the default output opens"),
        stop.clone(),
    );

    a.send(Command::Call {
        uri: format!("sip:b@{}", b.local_addr()),
        account: None,
    });
    let call = match wait_for(&mut a_ev, "A's established call", is_established) {
        Event::Call { call, .. } => call,
        _ => unreachable!(),
    };
    wait_for(&mut b_ev, "B's established call", is_established);
    std::thread::sleep(Duration::from_millis(2000));
    a.send(Command::Stats);
    let devices = match wait_for(&mut a_ev, "stats", |e| matches!(e, Event::Stats { .. })) {
        Event::Stats { devices, .. } => devices.expect("device figures"),
        _ => unreachable!(),
    };
    assert_eq!(
        devices.input, "default",
        "A kept the real input: {devices:?}"
    );
    assert_eq!(devices.input_opens, 1);
    // The echo canceller runs on the real microphone with the input's latency as its hint.
    let hint = devices.echo_delay_ms.expect("an echo delay hint");
    assert!((10..=500).contains(&hint), "{hint} ms");
    // A fresh enumeration, as a settings page asks for one.
    a.send(Command::ListDevices);
    match wait_for(&mut a_ev, "devices", |e| matches!(e, Event::Devices { .. })) {
        Event::Devices { inputs, outputs } => {
            assert!(
                inputs.iter().any(|d| d.contains("loop.monitor")),
                "{inputs:?}"
            );
            assert!(outputs.iter().any(|d| d.contains("loop")), "{outputs:?}");
        }
        _ => unreachable!(),
    }
    a.send(Command::Hangup { call });
    wait_for(&mut b_ev, "B's call ending", |e| {
        matches!(
            e,
            Event::Call {
                state: CallState::Ended,
                ..
            }
        )
    });
    a.shutdown();
    b.shutdown();
    stop.store(true, Ordering::Relaxed);
    player.join().unwrap();
    // No device error was reported by A since (a lost device would say so in an `error`).
    while let Ok(e) = a_ev.try_recv() {
        assert!(!matches!(e, Event::Error { .. }), "{e:?}");
    }
    drop(pulse);

    let wav = read_wav(&b_wav).expect("B's recording");
    let n = wav.samples.len();
    assert!(n >= 72_000, "recording too short: {n} samples");
    let tail = &wav.samples[n - 48_000..n - 9_600];
    let share = share_of_440(tail);
    println!(
        "B recorded {n} samples; 440 Hz in {:.0}% of the tail's blocks; whole: {:?}",
        share * 100.0,
        dominant_tone(tail, HUB_RATE, &CANDIDATES)
    );
    assert!(
        share >= 0.7,
        "B hears what A's default microphone captured in only {:.0}% of the blocks",
        share * 100.0
    );
}

/// The engine's `stats`: its first call's media figures and the device figures.
fn stats(engine: &Engine, rx: &mut UnboundedReceiver<Event>) -> (Option<MediaStats>, DeviceStats) {
    engine.send(Command::Stats);
    match wait_for(rx, "stats", |e| matches!(e, Event::Stats { .. })) {
        Event::Stats { calls, devices } => (
            calls.first().and_then(|c| c.media),
            devices.expect("device figures"),
        ),
        _ => unreachable!(),
    }
}

/// An engine on the default microphone and speaker, once both are open (each opened once).
fn engine_on_default_devices(base: u16) -> (Engine, UnboundedReceiver<Event>) {
    let (e, mut ev) = Engine::spawn(
        test_settings("default", "default".into(), base, false),
        None,
    )
    .expect("the engine starts");
    let d = wait_devices(&e, &mut ev, "opened", |_| true);
    assert_eq!((d.input_opens, d.output_opens), (1, 1));
    (e, ev)
}

/// Asks for `stats` until `pred` holds on the device figures (10 s at most).
fn wait_devices(
    engine: &Engine,
    rx: &mut UnboundedReceiver<Event>,
    what: &str,
    pred: impl Fn(&DeviceStats) -> bool,
) -> DeviceStats {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, d) = stats(engine, rx);
        if pred(&d) {
            return d;
        }
        assert!(Instant::now() < deadline, "{what}: still {d:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// `pactl list short KIND` rows as (index, name-or-owner column).
fn pactl_rows(pulse: &Pulse, kind: &str) -> Vec<(String, String)> {
    pulse
        .pactl(&["list", "short", kind])
        .unwrap()
        .lines()
        .filter_map(|l| {
            let mut cols = l.split('\t');
            Some((cols.next()?.to_string(), cols.next()?.to_string()))
        })
        .collect()
}

fn test_settings(audio_in: &str, audio_out: String, ports: u16, auto_answer: bool) -> Settings {
    Settings {
        listen: "127.0.0.1:0".into(),
        rtp_ports: format!("{ports}-{}", ports + 19),
        audio_in: audio_in.into(),
        audio_out,
        auto_answer,
        // The tests loop a device's output back to its input: an echo canceller would (rightly)
        // remove exactly what they listen for.
        audio_processing: false,
        ..Settings::default()
    }
}

#[test]
fn a_device_that_disappears_mid_call_falls_back_to_the_default_and_the_call_goes_on() {
    let pulse = Pulse::start();
    let module = pulse
        .pactl(&[
            "load-module",
            "module-null-sink",
            "sink_name=gone",
            "sink_properties=device.description=gone",
        ])
        .expect("a second null sink")
        .trim()
        .to_string();
    let dir = tempfile::tempdir().unwrap();
    let a_wav = dir.path().join("a.wav");
    let base = 34000 + (std::process::id() % 100) as u16 * 40;
    // A sends a tone and records; B plays what it hears to device:gone and captures that
    // device's monitor: B echoes A's tone back through the device that goes away.
    let (a, mut a_ev) = Engine::spawn(
        test_settings("tone:440", format!("wav:{}", a_wav.display()), base, false),
        None,
    )
    .expect("A starts");
    let (b, mut b_ev) = Engine::spawn(
        test_settings("device:gone.monitor", "device:gone".into(), base + 20, true),
        None,
    )
    .expect("B starts");
    a.send(Command::Call {
        uri: format!("sip:b@{}", b.local_addr()),
        account: None,
    });
    let call = match wait_for(&mut a_ev, "A's established call", is_established) {
        Event::Call { call, .. } => call,
        _ => unreachable!(),
    };
    wait_for(&mut b_ev, "B's established call", is_established);
    std::thread::sleep(Duration::from_millis(1500));
    let (before, d) = stats(&b, &mut b_ev);
    assert_eq!(
        (d.input.as_str(), d.output.as_str()),
        ("device:gone.monitor", "device:gone")
    );
    assert_eq!((d.input_opens, d.output_opens), (1, 1));
    let sent_before = before.expect("B's media").packets_sent;
    let (a_before, _) = stats(&a, &mut a_ev);
    let received_before = a_before.expect("A's media").packets_received;

    let unplugged = Instant::now();
    pulse
        .pactl(&["unload-module", &module])
        .expect("the device goes away");
    // An error names each device that went away.
    for dir in ["input", "output"] {
        let e = wait_for(
            &mut b_ev,
            "an error about the device",
            |e| matches!(e, Event::Error { message } if message.contains(&format!("{dir} device:gone"))),
        );
        println!("{:?} after the unplug: {e:?}", unplugged.elapsed());
    }
    // B is on the defaults now (the harness's other null sink and its monitor): re-opened.
    let d = wait_devices(&b, &mut b_ev, "B on the defaults", |d| {
        d.input == "default" && d.output == "default"
    });
    assert_eq!((d.input_opens, d.output_opens), (2, 2), "{d:?}");
    println!("on the defaults {:?} after the unplug", unplugged.elapsed());
    // What A hears meanwhile: B's echo through its default devices (A's only sound source),
    // from A's meter (10 per second); and the call never ends.
    let mut heard = Vec::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(2000) {
        match a_ev.try_recv() {
            Ok(Event::Levels { calls, .. }) if start.elapsed() > Duration::from_millis(500) => {
                heard.extend(calls.iter().map(|c| c.output_dbfs));
            }
            Ok(
                e @ Event::Call {
                    state: CallState::Ended,
                    ..
                },
            ) => panic!("{e:?}"),
            Ok(_) => {}
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    println!("A's call output levels on B's fallback: {heard:.0?} dBFS");
    assert!(heard.len() >= 10, "{heard:?}");
    assert!(heard.iter().all(|&l| l > -30.0), "silence at A: {heard:?}");
    // The call is up and its RTP flows both ways.
    let (after, _) = stats(&b, &mut b_ev);
    let after = after.expect("B's call still has media");
    assert!(
        after.packets_sent >= sent_before + 100,
        "{sent_before} -> {}",
        after.packets_sent
    );
    let (a_media, _) = stats(&a, &mut a_ev);
    let received = a_media.expect("A's media").packets_received;
    assert!(
        received >= received_before + 100,
        "A received {received_before} -> {received}"
    );
    while let Ok(e) = a_ev.try_recv() {
        assert!(
            !matches!(
                e,
                Event::Call {
                    state: CallState::Ended,
                    ..
                }
            ),
            "{e:?}"
        );
    }
    // Plugged in again: B goes back to the device it was told to use.
    pulse
        .pactl(&[
            "load-module",
            "module-null-sink",
            "sink_name=gone",
            "sink_properties=device.description=gone",
        ])
        .expect("the device is back");
    let d = wait_devices(&b, &mut b_ev, "B back on device:gone", |d| {
        d.input == "device:gone.monitor" && d.output == "device:gone"
    });
    assert_eq!((d.input_opens, d.output_opens), (3, 3), "{d:?}");
    std::thread::sleep(Duration::from_millis(2000));
    a.send(Command::Hangup { call });
    wait_for(&mut b_ev, "B's call ending", |e| {
        matches!(
            e,
            Event::Call {
                state: CallState::Ended,
                ..
            }
        )
    });
    a.shutdown();
    b.shutdown();
    drop(pulse);
    // The last 1.5 s of the call: A hears its tone again, through device:gone back.
    let wav = read_wav(&a_wav).expect("A's recording");
    let n = wav.samples.len();
    let tail = &wav.samples[n - 72_000..n - 4_800];
    let share = share_of_440(tail);
    println!(
        "440 Hz in {:.0}% of the blocks after the device came back",
        share * 100.0
    );
    assert!(
        share >= 0.7,
        "A hears B's echo through the returned device in only {:.0}% of the blocks",
        share * 100.0
    );
}

#[test]
fn a_new_device_is_announced_and_a_new_default_is_followed() {
    let pulse = Pulse::start();
    let base = 35000 + (std::process::id() % 100) as u16 * 40;
    // The engine answers once its devices are open and its loop (and the watcher) runs; the
    // watcher's first look, a moment later, is its baseline.
    let (e, mut ev) = engine_on_default_devices(base);
    std::thread::sleep(Duration::from_millis(1000));
    let (inputs, outputs) = plug_null_sink(&pulse, &mut ev, "fresh");
    assert!(
        inputs.iter().any(|d| d.contains("fresh.monitor")),
        "{inputs:?}"
    );
    assert!(outputs.iter().any(|d| d.contains("fresh")), "{outputs:?}");
    // A new device alone is not a reason to re-open.
    let d = wait_devices(&e, &mut ev, "unchanged", |_| true);
    assert_eq!((d.input_opens, d.output_opens), (1, 1));

    let switched = Instant::now();
    pulse.pactl(&["set-default-sink", "fresh"]).unwrap();
    pulse
        .pactl(&["set-default-source", "fresh.monitor"])
        .unwrap();
    let d = wait_devices(&e, &mut ev, "following the new default", |d| {
        d.input_opens == 2 && d.output_opens == 2
    });
    assert_eq!(
        (d.input.as_str(), d.output.as_str()),
        ("default", "default")
    );
    println!(
        "followed {:?} after the default changed",
        switched.elapsed()
    );
    // The engine's streams are on the new default now (and only there).
    let sinks = pactl_rows(&pulse, "sinks");
    let fresh = &sinks.iter().find(|(_, n)| n == "fresh").unwrap().0;
    let inputs = pactl_rows(&pulse, "sink-inputs");
    assert!(
        !inputs.is_empty() && inputs.iter().all(|(_, sink)| sink == fresh),
        "{inputs:?} vs {sinks:?}"
    );
    let sources = pactl_rows(&pulse, "sources");
    let monitor = &sources
        .iter()
        .find(|(_, n)| n == "fresh.monitor")
        .unwrap()
        .0;
    let outputs = pactl_rows(&pulse, "source-outputs");
    assert!(
        !outputs.is_empty() && outputs.iter().all(|(_, src)| src == monitor),
        "{outputs:?} vs {sources:?}"
    );
    e.shutdown();
    while let Ok(e) = ev.try_recv() {
        assert!(!matches!(e, Event::Error { .. }), "{e:?}");
    }
}

#[test]
fn a_sound_server_that_dies_mid_call_leaves_silence_and_the_call_goes_on() {
    let mut pulse = Pulse::start();
    let base = 36000 + (std::process::id() % 100) as u16 * 40;
    let (a, mut a_ev) = Engine::spawn(test_settings("tone:440", "null".into(), base, false), None)
        .expect("A starts");
    let (b, mut b_ev) = Engine::spawn(
        test_settings("default", "default".into(), base + 20, true),
        None,
    )
    .expect("B starts");
    a.send(Command::Call {
        uri: format!("sip:b@{}", b.local_addr()),
        account: None,
    });
    wait_for(&mut a_ev, "A's established call", is_established);
    wait_for(&mut b_ev, "B's established call", is_established);
    std::thread::sleep(Duration::from_millis(1000));
    let (before, _) = stats(&b, &mut b_ev);
    let sent_before = before.expect("B's media").packets_sent;
    // Both of B's streams fail at once; nothing else can be opened (the turn is kept).
    pulse.kill_server();
    // Each direction reports its own failure, in either order.
    let stopped = |e: &Event| -> Option<&'static str> {
        let Event::Error { message } = e else {
            return None;
        };
        ["input", "output"]
            .into_iter()
            .find(|dir| message.contains(&format!("audio {dir} default stopped working")))
    };
    let mut failing = vec!["input", "output"];
    while !failing.is_empty() {
        let e = wait_for(&mut b_ev, "the devices failing", |e| {
            stopped(e).is_some_and(|dir| failing.contains(&dir))
        });
        println!("{e:?}");
        failing.retain(|&dir| stopped(&e) != Some(dir));
    }
    let d = wait_devices(&b, &mut b_ev, "B on stand-ins", |d| {
        d.input == "silence" && d.output == "null"
    });
    assert_eq!((d.input_opens, d.output_opens), (2, 2), "{d:?}");
    std::thread::sleep(Duration::from_millis(1000));
    let (after, _) = stats(&b, &mut b_ev);
    let after = after.expect("B's call still has media");
    assert!(
        after.packets_sent >= sent_before + 50,
        "{sent_before} -> {}",
        after.packets_sent
    );
    while let Ok(e) = b_ev.try_recv() {
        assert!(
            !matches!(
                e,
                Event::Call {
                    state: CallState::Ended,
                    ..
                }
            ),
            "{e:?}"
        );
    }
    a.shutdown();
    b.shutdown();
}

/// The `Corked:` state of the streams the sound server has from us, of one kind
/// (`sink-inputs`: playback, `source-outputs`: record).
fn corked(pulse: &Pulse, kind: &str) -> Vec<bool> {
    let text = pulse.pactl(&["list", kind]).expect("pactl list");
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("Corked:"))
        .map(|v| v.trim() == "yes")
        .collect()
}

/// Waits until our one playback stream and our one record stream are both corked (`want`) or
/// both running.
fn wait_corked(pulse: &Pulse, want: bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (play, rec) = (
            corked(pulse, "sink-inputs"),
            corked(pulse, "source-outputs"),
        );
        if play == [want] && rec == [want] {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: playback corked {play:?}, record corked {rec:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn idle_devices_stay_open_but_paused_and_run_again_when_needed() {
    let pulse = Pulse::start();
    let base = 36000 + (std::process::id() % 100) as u16 * 40;
    let (e, mut ev) = engine_on_default_devices(base);
    // Nothing needs the devices: open but corked at the server, so they cost no CPU.
    wait_corked(&pulse, true, "idle");
    // The settings page's meter needs the microphone (and the engine's clock runs the output);
    // resumed and paused again several times, levels flow each time.
    for round in 0..3 {
        e.send(Command::MonitorInput { on: true });
        wait_corked(&pulse, false, &format!("metering, round {round}"));
        // The test tone on the sink, heard through its monitor: the resumed microphone delivers.
        e.send(Command::PlayTestTone { ring: false });
        while ev.try_recv().is_ok() {}
        wait_for(
            &mut ev,
            "the test tone through the resumed microphone",
            |e| matches!(e, Event::Levels { input_dbfs, .. } if *input_dbfs > -40.0),
        );
        e.send(Command::MonitorInput { on: false });
        wait_corked(&pulse, true, &format!("idle again, round {round}"));
    }
    // Still the same two streams: paused and resumed, never re-opened.
    let d = wait_devices(&e, &mut ev, "unchanged", |_| true);
    assert_eq!((d.input_opens, d.output_opens), (1, 1));
}

/// Context switches so far of this process's threads named like the device watcher
/// (`dialtone-devices`, cut to 15 characters by the kernel), by thread id: the watcher and the
/// sound-server connection threads it starts, which inherit its name.
fn watcher_switches() -> HashMap<String, u64> {
    let mut switches = HashMap::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let path = task.path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if comm.trim() != "dialtone-device" {
            continue;
        }
        // The thread may have ended in between.
        let status = std::fs::read_to_string(path.join("status")).unwrap_or_default();
        let n: u64 = status
            .lines()
            .filter(|l| l.contains("ctxt_switches:"))
            .filter_map(|l| l.split(':').nth(1)?.trim().parse::<u64>().ok())
            .sum();
        switches.insert(task.file_name().to_string_lossy().into_owned(), n);
    }
    switches
}

/// How often the device watcher's threads ran while `idle` passed, leaving out those of
/// `earlier` (another engine's, from before this test's).
fn watcher_wakes(earlier: &HashMap<String, u64>, idle: Duration) -> u64 {
    let mine = || -> HashMap<String, u64> {
        watcher_switches()
            .into_iter()
            .filter(|(tid, _)| !earlier.contains_key(tid))
            .collect()
    };
    let before = mine();
    assert!(!before.is_empty(), "the engine watches its devices");
    std::thread::sleep(idle);
    let after = mine();
    println!("watcher threads' context switches: {before:?} -> {after:?}");
    after
        .iter()
        .map(|(tid, n)| n - before.get(tid).copied().unwrap_or(0))
        .sum()
}

/// The highest client index the sound server gave out: it counts the connections made (this
/// `pactl` is one of them).
fn last_client(pulse: &Pulse) -> u32 {
    pactl_rows(pulse, "clients")
        .iter()
        .filter_map(|(index, _)| index.parse().ok())
        .max()
        .expect("pactl itself is a client")
}

#[test]
fn an_idle_engine_wakes_no_watcher_thread_and_makes_no_connection_yet_sees_a_new_device() {
    let pulse = Pulse::start();
    let earlier = watcher_switches();
    let base = 37000 + (std::process::id() % 100) as u16 * 40;
    let (e, mut ev) = engine_on_default_devices(base);
    // Settled: both streams paused (their starting and pausing are changes the watcher hears of
    // and looks at).
    wait_corked(&pulse, true, "idle");
    std::thread::sleep(Duration::from_millis(1000));
    let clients_before = last_client(&pulse);
    // Looking every 2 s woke the watcher three times here, and its connection's thread more.
    let woke = watcher_wakes(&earlier, Duration::from_secs(6));
    assert_eq!(woke, 0, "the watcher's threads ran while nothing changed");
    assert_eq!(
        last_client(&pulse),
        clients_before + 1,
        "only the second pactl connected to the sound server"
    );
    // Still watching: a device plugged in now is announced.
    let (_, outputs) = plug_null_sink(&pulse, &mut ev, "late");
    assert!(outputs.iter().any(|d| d.contains("late")), "{outputs:?}");
    e.shutdown();
}

#[test]
fn a_sound_server_that_restarts_is_used_again_and_watched_again() {
    let mut pulse = Pulse::start();
    let earlier = watcher_switches();
    let base = 38000 + (std::process::id() % 100) as u16 * 40;
    let (e, mut ev) = engine_on_default_devices(base);
    // The watcher's first look (its baseline) is a moment after the devices open.
    wait_corked(&pulse, true, "idle");
    std::thread::sleep(Duration::from_millis(1000));
    pulse.kill_server();
    // Whatever stands in meanwhile (silence and the null sink here, with no sound card).
    let d = wait_devices(&e, &mut ev, "re-opened without the server", |d| {
        d.input_opens == 2 && d.output_opens == 2
    });
    println!("without the server: {d:?}");
    let restarted = Instant::now();
    pulse.restart();
    // The server's devices are announced (not those of a host found while it was away).
    wait_for(
        &mut ev,
        "the server's devices",
        |e| matches!(e, Event::Devices { outputs, .. } if outputs.iter().any(|d| d.starts_with("pulseaudio:loop"))),
    );
    let d = wait_devices(&e, &mut ev, "back on the server's defaults", |d| {
        d.input_opens == 3 && d.output_opens == 3
    });
    assert_eq!(
        (d.input.as_str(), d.output.as_str()),
        ("default", "default")
    );
    println!("back {:?} after the restart", restarted.elapsed());
    assert_eq!(pactl_rows(&pulse, "sink-inputs").len(), 1);
    assert_eq!(pactl_rows(&pulse, "source-outputs").len(), 1);
    // Subscribed again: idle, the watcher does not look every 2 s any more.
    wait_corked(&pulse, true, "idle");
    std::thread::sleep(Duration::from_millis(1000));
    let woke = watcher_wakes(&earlier, Duration::from_secs(3));
    assert_eq!(woke, 0, "the watcher's threads ran while nothing changed");
    e.shutdown();
}
