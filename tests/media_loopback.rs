//! Audio end to end between two engines in one process over loopback, with synthetic devices:
//! a tone captured by one engine must come out of the other's recorded output, both ways, and
//! the devices are opened once however many calls use them.

use dialtone::api::{CallId, CallState, Command, DeviceStats, Event, MediaStats};
use dialtone::engine::Engine;
use dialtone::engine::media::tone::dominant_tone;
use dialtone::engine::media::wav::read_wav;
use dialtone::store::settings::{MediaEncryption, Settings};
use std::path::Path;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedReceiver;

const T: Duration = Duration::from_secs(5);

/// Distinct RTP ranges per engine so parallel tests never collide.
fn rtp_range() -> String {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let base =
        31000 + (std::process::id() % 100) as u16 * 200 + NEXT.fetch_add(20, Ordering::SeqCst);
    format!("{base}-{}", base + 19)
}

fn engine(
    audio_in: &str,
    audio_out: &str,
    auto_answer: bool,
) -> (Engine, UnboundedReceiver<Event>) {
    engine_with(audio_in, audio_out, auto_answer, MediaEncryption::None)
}

fn engine_with(
    audio_in: &str,
    audio_out: &str,
    auto_answer: bool,
    media_encryption: MediaEncryption,
) -> (Engine, UnboundedReceiver<Event>) {
    let settings = Settings {
        media_encryption,
        listen: "127.0.0.1:0".into(),
        rtp_ports: rtp_range(),
        audio_in: audio_in.into(),
        audio_out: audio_out.into(),
        auto_answer,
        ..Settings::default()
    };
    Engine::spawn(settings, None).expect("engine starts")
}

#[track_caller]
fn wait_for(rx: &mut UnboundedReceiver<Event>, what: &str, pred: impl Fn(&Event) -> bool) -> Event {
    let deadline = Instant::now() + T;
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        match rx.try_recv() {
            Ok(e) if pred(&e) => return e,
            Ok(e) => seen.push(e),
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    panic!("no {what} within {T:?}; seen: {seen:#?}");
}

fn established(rx: &mut UnboundedReceiver<Event>) -> CallId {
    match wait_for(rx, "established call", |e| {
        matches!(
            e,
            Event::Call {
                state: CallState::Established,
                ..
            }
        )
    }) {
        Event::Call { call, .. } => call,
        _ => unreachable!(),
    }
}

/// Each live call's id, media figures and codec.
type CallFigures = Vec<(CallId, Option<MediaStats>, Option<String>)>;

fn stats(engine: &Engine, rx: &mut UnboundedReceiver<Event>) -> (CallFigures, DeviceStats) {
    engine.send(Command::Stats);
    match wait_for(rx, "stats", |e| matches!(e, Event::Stats { .. })) {
        Event::Stats { calls, devices } => (
            calls
                .into_iter()
                .map(|c| (c.call, c.media, c.codec))
                .collect(),
            devices.expect("device figures in stats"),
        ),
        _ => unreachable!(),
    }
}

/// The dominant tone in the last second of a recording, and its level.
fn recorded_tone(path: &Path) -> (f32, f32) {
    let wav = read_wav(path).expect("the recording is a valid WAV");
    assert_eq!(wav.rate, 48_000);
    let n = wav.samples.len();
    assert!(n >= 48_000, "recording too short: {n} samples");
    let tail = &wav.samples[n - 48_000..n - 9_600];
    let found = dominant_tone(tail, 48_000, &[440.0, 1000.0]);
    println!("{}: {n} samples, dominant tone {found:?}", path.display());
    found.unwrap_or_else(|| {
        panic!(
            "no tone in the recording (rms of the tail: {:?})",
            tail.iter().map(|&s| i64::from(s).abs()).max()
        )
    })
}

#[test]
fn tones_cross_both_ways_and_are_detected_in_the_recordings() {
    let dir = tempfile::tempdir().unwrap();
    let (a_wav, b_wav) = (dir.path().join("a.wav"), dir.path().join("b.wav"));
    let (a, mut a_ev) = engine("tone:440", &format!("wav:{}", a_wav.display()), false);
    let (b, mut b_ev) = engine("tone:1000", &format!("wav:{}", b_wav.display()), true);
    a.send(Command::Call {
        uri: format!("sip:b@{}", b.local_addr()),
        account: None,
    });
    let a_call = established(&mut a_ev);
    established(&mut b_ev);
    std::thread::sleep(Duration::from_millis(1500));

    let (calls, devices) = stats(&a, &mut a_ev);
    let (id, media, codec) = &calls[0];
    assert_eq!(*id, a_call);
    let media = media.expect("media figures for an established call");
    assert!(media.packets_sent >= 60, "{media:?}");
    assert!(media.packets_received >= 60, "{media:?}");
    assert!(media.lost <= 2, "{media:?}");
    assert_eq!(codec.as_deref(), Some("opus/48000/2"));
    assert_eq!(
        (devices.input_opens, devices.output_opens),
        (1, 1),
        "{devices:?}"
    );

    a.send(Command::Hangup { call: a_call });
    wait_for(&mut b_ev, "remote hang-up", |e| {
        matches!(
            e,
            Event::Call {
                state: CallState::Ended,
                ..
            }
        )
    });
    // Shutting down flushes the recordings.
    a.shutdown();
    b.shutdown();
    let (f, db) = recorded_tone(&b_wav);
    assert_eq!(f, 440.0, "B hears A's tone");
    assert!(db > -20.0, "B hears it loud enough: {db} dBFS");
    let (f, db) = recorded_tone(&a_wav);
    assert_eq!(f, 1000.0, "A hears B's tone");
    assert!(db > -20.0, "{db} dBFS");
}

#[test]
fn tones_cross_both_ways_over_srtp() {
    let dir = tempfile::tempdir().unwrap();
    let (a_wav, b_wav) = (dir.path().join("a.wav"), dir.path().join("b.wav"));
    let (a, mut a_ev) = engine_with(
        "tone:440",
        &format!("wav:{}", a_wav.display()),
        false,
        MediaEncryption::SdesMandatory,
    );
    // B has SRTP off: it answers an RTP/SAVP offer with SRTP all the same.
    let (b, mut b_ev) = engine_with(
        "tone:1000",
        &format!("wav:{}", b_wav.display()),
        true,
        MediaEncryption::None,
    );
    a.send(Command::Call {
        uri: format!("sip:b@{}", b.local_addr()),
        account: None,
    });
    let a_call = established(&mut a_ev);
    established(&mut b_ev);
    std::thread::sleep(Duration::from_millis(1500));

    for (engine, rx) in [(&a, &mut a_ev), (&b, &mut b_ev)] {
        engine.send(Command::Stats);
        let Event::Stats { calls, .. } =
            wait_for(rx, "stats", |e| matches!(e, Event::Stats { .. }))
        else {
            unreachable!()
        };
        assert_eq!(calls.len(), 1);
        assert!(calls[0].srtp, "the call is RTP/SAVP: {:?}", calls[0]);
        let m = calls[0].media.expect("media figures");
        assert!(m.packets_sent >= 60 && m.packets_received >= 60, "{m:?}");
        assert_eq!(m.srtp_failures, 0, "{m:?}");
    }

    a.send(Command::Hangup { call: a_call });
    wait_for(&mut b_ev, "remote hang-up", |e| {
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
    // Only keys that match on both sides turn the SRTP back into these tones.
    let (f, db) = recorded_tone(&b_wav);
    assert_eq!(f, 440.0, "B hears A's tone over SRTP");
    assert!(db > -20.0, "{db} dBFS");
    let (f, db) = recorded_tone(&a_wav);
    assert_eq!(f, 1000.0, "A hears B's tone over SRTP");
    assert!(db > -20.0, "{db} dBFS");
}

#[test]
fn devices_open_once_for_three_calls_in_a_row_and_two_at_once() {
    let (a, mut a_ev) = engine("tone:440", "null", false);
    let (b, mut b_ev) = engine("tone:1000", "null", true);
    let uri = format!("sip:b@{}", b.local_addr());
    for _ in 0..3 {
        a.send(Command::Call {
            uri: uri.clone(),
            account: None,
        });
        let call = established(&mut a_ev);
        std::thread::sleep(Duration::from_millis(200));
        a.send(Command::Hangup { call });
        wait_for(&mut a_ev, "ended", |e| {
            matches!(
                e,
                Event::Call {
                    state: CallState::Ended,
                    ..
                }
            )
        });
    }
    for _ in 0..2 {
        a.send(Command::Call {
            uri: uri.clone(),
            account: None,
        });
        established(&mut a_ev);
    }
    std::thread::sleep(Duration::from_millis(400));
    let (calls, devices) = stats(&a, &mut a_ev);
    assert_eq!(calls.len(), 2);
    for (_, media, _) in &calls {
        let m = media.expect("media");
        assert!(m.packets_sent >= 10 && m.packets_received >= 10, "{m:?}");
        assert!(m.frames_fanned_out >= 10, "{m:?}");
    }
    assert_eq!(
        (devices.input_opens, devices.output_opens),
        (1, 1),
        "{devices:?}"
    );
    // Two calls with the same codec: one encode per captured frame, not two.
    assert!(
        devices.encodes <= devices.frames_captured + 1,
        "{devices:?}"
    );
    let (_, b_devices) = stats(&b, &mut b_ev);
    assert_eq!((b_devices.input_opens, b_devices.output_opens), (1, 1));
}
