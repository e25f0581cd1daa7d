//! The real device path (cpal's PulseAudio host) against a private PulseAudio server with a null
//! sink (tests/common/pulse.rs): what Dialtone plays to the default output comes back on the
//! default input (the sink's monitor). Needs the `pulseaudio` and `pulseaudio-utils` packages;
//! without them the tests fail, they never skip.

mod common;

use common::pulse::Pulse;
use dialtone::api::{CallState, Command, Event};
use dialtone::engine::Engine;
use dialtone::engine::media::cpal_device::{CpalSink, CpalSource};
use dialtone::engine::media::devices::{
    AudioSink, AudioSource, FRAME_SAMPLES, HUB_RATE, InputSpec, list_devices, open_source,
};
use dialtone::engine::media::tone::{ToneGenerator, dominant_tone};
use dialtone::engine::media::wav::read_wav;
use dialtone::store::settings::Settings;
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
    let mut captured = Vec::new();
    let mut frame = [0i16; FRAME_SAMPLES];
    let start = Instant::now();
    for n in 1..=75u32 {
        source.read(&mut frame).expect("the source reads");
        captured.extend_from_slice(&frame);
        let next = start + Duration::from_millis(20) * n;
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
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
