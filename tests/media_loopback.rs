//! Audio end to end between two engines in one process over loopback, with synthetic devices:
//! a tone captured by one engine must come out of the other's recorded output, both ways, and
//! the devices are opened once however many calls use them.

use dialtone::api::{CallId, CallState, Command, DeviceStats, Event, MediaStats};
use dialtone::echo::EchoService;
use dialtone::engine::Engine;
use dialtone::engine::media::tone::dominant_tone;
use dialtone::engine::media::wav::read_wav;
use dialtone::store::settings::{Account, MediaEncryption, Settings};
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
    engine_with(
        audio_in,
        audio_out,
        auto_answer,
        &["opus", "PCMU", "PCMA"],
        MediaEncryption::None,
    )
}

fn engine_with(
    audio_in: &str,
    audio_out: &str,
    auto_answer: bool,
    codecs: &[&str],
    media_encryption: MediaEncryption,
) -> (Engine, UnboundedReceiver<Event>) {
    let settings = Settings {
        media_encryption,
        codecs: codecs.iter().map(|c| c.to_string()).collect(),
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
    tones_cross_both_ways(&["opus", "PCMU", "PCMA"], "opus/48000/2");
}

#[test]
fn tones_cross_both_ways_over_pcmu() {
    tones_cross_both_ways(&["PCMU"], "PCMU/8000");
}

#[test]
fn tones_cross_both_ways_over_pcma() {
    tones_cross_both_ways(&["PCMA", "opus"], "PCMA/8000");
}

/// A offers `codecs` (B takes the first it supports); each one's tone comes out of the other.
fn tones_cross_both_ways(codecs: &[&str], expect_codec: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (a_wav, b_wav) = (dir.path().join("a.wav"), dir.path().join("b.wav"));
    let (a, mut a_ev) = engine_with(
        "tone:440",
        &format!("wav:{}", a_wav.display()),
        false,
        codecs,
        MediaEncryption::None,
    );
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
    assert_eq!(codec.as_deref(), Some(expect_codec));
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
        &["opus", "PCMU", "PCMA"],
        MediaEncryption::SdesMandatory,
    );
    // B has SRTP off: it answers an RTP/SAVP offer with SRTP all the same.
    let (b, mut b_ev) = engine_with(
        "tone:1000",
        &format!("wav:{}", b_wav.display()),
        true,
        &["opus", "PCMU", "PCMA"],
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

#[test]
fn dtmf_digits_arrive_in_order_as_telephone_events() {
    let (a, mut a_ev) = engine("tone:440", "null", false);
    let (b, mut b_ev) = engine("silence", "null", true);
    a.send(Command::Call {
        uri: format!("sip:b@{}", b.local_addr()),
        account: None,
    });
    let call = established(&mut a_ev);
    established(&mut b_ev);
    a.send(Command::Dtmf {
        call,
        digits: "159#".into(),
    });
    let mut got = Vec::new();
    while got.len() < 4 {
        match wait_for(&mut b_ev, "a DTMF digit", |e| {
            matches!(e, Event::Dtmf { .. })
        }) {
            Event::Dtmf {
                digit, duration_ms, ..
            } => {
                assert!(
                    (80..=140).contains(&duration_ms),
                    "{digit}: {duration_ms} ms"
                );
                got.push(digit);
            }
            _ => unreachable!(),
        }
    }
    assert_eq!(got, vec!['1', '5', '9', '#']);
    // Audio goes on between and after the digits.
    std::thread::sleep(Duration::from_millis(500));
    let (calls, _) = stats(&a, &mut a_ev);
    assert!(calls[0].1.expect("media").frames_fanned_out >= 20);
}

#[test]
fn switching_the_input_mid_call_changes_the_sound_without_renegotiating() {
    let dir = tempfile::tempdir().unwrap();
    let b_wav = dir.path().join("b.wav");
    let (a, mut a_ev) = engine("tone:440", "null", false);
    let (b, mut b_ev) = engine("silence", &format!("wav:{}", b_wav.display()), true);
    a.send(Command::Call {
        uri: format!("sip:b@{}", b.local_addr()),
        account: None,
    });
    let call = established(&mut a_ev);
    established(&mut b_ev);
    std::thread::sleep(Duration::from_millis(1000));
    a.send(Command::SetAudioInput {
        spec: "tone:1000".into(),
    });
    std::thread::sleep(Duration::from_millis(1200));
    let (calls, devices) = stats(&a, &mut a_ev);
    assert_eq!(calls.len(), 1, "the call is still up");
    assert_eq!(devices.input, "tone:1000");
    assert_eq!(
        devices.input_opens, 2,
        "one open at start, one for the switch"
    );
    // No re-INVITE: since it was established, B's call has not changed state.
    let mut b_changes = Vec::new();
    while let Ok(e) = b_ev.try_recv() {
        if matches!(e, Event::Call { .. }) {
            b_changes.push(e);
        }
    }
    assert!(b_changes.is_empty(), "{b_changes:?}");
    a.send(Command::Hangup { call });
    wait_for(&mut b_ev, "ended", |e| {
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
    let wav = read_wav(&b_wav).unwrap();
    let s = &wav.samples;
    assert!(s.len() >= 96_000, "{}", s.len());
    let before = dominant_tone(&s[14_400..38_400], 48_000, &[440.0, 1000.0]);
    let after = dominant_tone(
        &s[s.len() - 33_600..s.len() - 9_600],
        48_000,
        &[440.0, 1000.0],
    );
    assert_eq!(before.map(|t| t.0), Some(440.0), "{before:?}");
    assert_eq!(after.map(|t| t.0), Some(1000.0), "{after:?}");
}

#[test]
fn caller_hears_ringback_and_callee_hears_the_ring_tone_until_answer() {
    use dialtone::engine::media::alerts::{RING_HZ, RINGBACK_HZ};
    let dir = tempfile::tempdir().unwrap();
    let (a_wav, b_wav) = (dir.path().join("a.wav"), dir.path().join("b.wav"));
    let (a, mut a_ev) = engine("silence", &format!("wav:{}", a_wav.display()), false);
    let (b, mut b_ev) = engine("silence", &format!("wav:{}", b_wav.display()), false);
    a.send(Command::Call {
        uri: format!("sip:b@{}", b.local_addr()),
        account: None,
    });
    let incoming = match wait_for(&mut b_ev, "incoming", |e| {
        matches!(e, Event::Incoming { .. })
    }) {
        Event::Incoming { call, .. } => call,
        _ => unreachable!(),
    };
    std::thread::sleep(Duration::from_millis(700));
    b.send(Command::Answer { call: incoming });
    let call = established(&mut a_ev);
    std::thread::sleep(Duration::from_millis(300));
    a.send(Command::Hangup { call });
    wait_for(&mut b_ev, "ended", |e| {
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
    let candidates = [RINGBACK_HZ, RING_HZ.0, 1000.0];
    let a_rec = read_wav(&a_wav).unwrap().samples;
    let b_rec = read_wav(&b_wav).unwrap().samples;
    assert!(
        a_rec.len() >= 24_000 && b_rec.len() >= 24_000,
        "{} {}",
        a_rec.len(),
        b_rec.len()
    );
    let heard = |s: &[i16]| dominant_tone(&s[4_800..24_000], 48_000, &candidates).map(|t| t.0);
    assert_eq!(
        heard(&a_rec),
        Some(RINGBACK_HZ),
        "the caller hears ringback"
    );
    assert_eq!(
        heard(&b_rec),
        Some(RING_HZ.0),
        "the callee hears the ring tone"
    );
    // Once answered, the alerts stop: the end of each recording is the far end's silence.
    let tail = &a_rec[a_rec.len() - 4_800..];
    assert!(tail.iter().all(|&s| s.abs() < 200), "ringback after answer");
}

#[test]
fn level_events_meter_the_microphone_and_each_call_about_ten_times_a_second() {
    let (a, mut a_ev) = engine("tone:440", "null", false);
    let (b, mut b_ev) = engine("silence", "null", true);
    a.send(Command::Call {
        uri: format!("sip:b@{}", b.local_addr()),
        account: None,
    });
    established(&mut a_ev);
    let b_call = established(&mut b_ev);
    std::thread::sleep(Duration::from_millis(1000));
    let drain = |rx: &mut UnboundedReceiver<Event>| {
        let mut levels = Vec::new();
        while let Ok(e) = rx.try_recv() {
            if let Event::Levels { input_dbfs, calls } = e {
                levels.push((input_dbfs, calls));
            }
        }
        levels
    };
    let a_levels = drain(&mut a_ev);
    let b_levels = drain(&mut b_ev);
    // About 10 per second, not more.
    assert!((6..=12).contains(&a_levels.len()), "{}", a_levels.len());
    // A's microphone: a -10 dBFS sine has an RMS of about -13 dBFS.
    let (input, _) = a_levels.last().unwrap();
    assert!((-14.5..=-11.5).contains(input), "{input}");
    // B's microphone is silent; B's call plays A's tone.
    let (input, calls) = b_levels.last().unwrap();
    assert!(*input < -60.0, "{input}");
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].call, b_call);
    assert!((-16.0..=-10.0).contains(&calls[0].output_dbfs), "{calls:?}");
}

#[test]
fn muting_sends_silence_and_keeps_the_call_and_its_rtp() {
    let dir = tempfile::tempdir().unwrap();
    let b_wav = dir.path().join("b.wav");
    let (a, mut a_ev) = engine("tone:440", "null", false);
    let (b, mut b_ev) = engine("silence", &format!("wav:{}", b_wav.display()), true);
    a.send(Command::Call {
        uri: format!("sip:b@{}", b.local_addr()),
        account: None,
    });
    let call = established(&mut a_ev);
    established(&mut b_ev);
    std::thread::sleep(Duration::from_millis(800));
    a.send(Command::Mute { call, muted: true });
    std::thread::sleep(Duration::from_millis(100));
    let (before, _) = stats(&a, &mut a_ev);
    std::thread::sleep(Duration::from_millis(800));
    let (after, _) = stats(&a, &mut a_ev);
    let sent = |c: &CallFigures| c[0].1.expect("media").packets_sent;
    assert!(
        sent(&after) >= sent(&before) + 30,
        "RTP keeps flowing while muted"
    );
    a.send(Command::Hangup { call });
    wait_for(&mut b_ev, "ended", |e| {
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
    let s = read_wav(&b_wav).unwrap().samples;
    assert!(s.len() >= 72_000, "{}", s.len());
    let tone = dominant_tone(&s[9_600..33_600], 48_000, &[440.0, 1000.0]);
    assert_eq!(tone.map(|t| t.0), Some(440.0), "before muting: {tone:?}");
    let tail = &s[s.len() - 28_800..s.len() - 4_800];
    let loudest = tail.iter().map(|&x| i32::from(x).abs()).max().unwrap_or(0);
    assert!(loudest < 300, "muted, B hears silence (peak {loudest})");
}

// ------------------------------------------------------------------------------- echo service

/// A caller with `tone:440`, a recorder and `accounts` calls the echo service and must hear its
/// own tone back.
fn echo_test(codecs: &[&str], expect_codec: &str, accounts: Vec<Account>) {
    let echo = EchoService::spawn().expect("the echo service starts");
    let dir = tempfile::tempdir().unwrap();
    let heard = dir.path().join("heard.wav");
    let settings = Settings {
        accounts,
        codecs: codecs.iter().map(|c| c.to_string()).collect(),
        listen: "127.0.0.1:0".into(),
        rtp_ports: rtp_range(),
        audio_in: "tone:440".into(),
        audio_out: format!("wav:{}", heard.display()),
        ..Settings::default()
    };
    let (caller, mut ev) = Engine::spawn(settings, None).expect("engine starts");
    assert!(
        echo.uri().starts_with("sip:echo@127.0.0.1:"),
        "{}",
        echo.uri()
    );
    caller.send(Command::Call {
        uri: echo.uri(),
        account: None,
    });
    let call = established(&mut ev);
    std::thread::sleep(Duration::from_millis(1500));
    let (calls, _) = stats(&caller, &mut ev);
    assert_eq!(calls[0].2.as_deref(), Some(expect_codec));
    let media = calls[0].1.expect("media figures");
    assert!(media.packets_received >= 60, "{media:?}");
    caller.send(Command::Hangup { call });
    wait_for(&mut ev, "ended", |e| {
        matches!(
            e,
            Event::Call {
                state: CallState::Ended,
                ..
            }
        )
    });
    caller.shutdown();
    drop(echo);
    let (f, db) = recorded_tone(&heard);
    assert_eq!(f, 440.0, "the caller hears its own tone back");
    assert!(db > -20.0, "loud enough: {db} dBFS");
}

#[test]
fn echo_service_plays_back_a_caller_without_accounts_over_opus() {
    echo_test(&["opus", "PCMU"], "opus/48000/2", Vec::new());
}

#[test]
fn echo_service_plays_back_a_caller_without_accounts_over_pcmu() {
    echo_test(&["PCMU"], "PCMU/8000", Vec::new());
}

#[test]
fn echo_service_is_dialled_directly_by_a_caller_whose_account_is_elsewhere() {
    // The account's server is unreachable (TEST-NET-1): the echo call must not go there.
    let elsewhere = Account {
        uri: "sip:carol@example.net".into(),
        registrar: "192.0.2.1:5060".into(),
        outbound_proxy: "192.0.2.1:5060".into(),
        register: false,
        ..Account::default()
    };
    echo_test(&["PCMU"], "PCMU/8000", vec![elsewhere]);
}

// ------------------------------------------------------------------ ring device, test tone, meter

#[test]
fn the_ring_tone_rings_on_the_ring_device_and_not_on_the_call_output() {
    use dialtone::engine::media::alerts::RING_HZ;
    let dir = tempfile::tempdir().unwrap();
    let (out, ring) = (dir.path().join("out.wav"), dir.path().join("ring.wav"));
    let (a, mut a_ev) = engine("silence", "null", false);
    // B: the calls on one recorder, the ring tone on another.
    let (b, mut b_ev) = Engine::spawn(
        Settings {
            listen: "127.0.0.1:0".into(),
            rtp_ports: rtp_range(),
            audio_in: "silence".into(),
            audio_out: format!("wav:{}", out.display()),
            ring_out: format!("wav:{}", ring.display()),
            ..Settings::default()
        },
        None,
    )
    .expect("engine starts");
    let (_, devices) = stats(&b, &mut b_ev);
    assert_eq!(devices.ring_output, format!("wav:{}", ring.display()));
    assert_eq!(devices.ring_opens, 1, "opened once, at start");
    a.send(Command::Call {
        uri: format!("sip:b@{}", b.local_addr()),
        account: None,
    });
    let incoming = match wait_for(&mut b_ev, "incoming", |e| {
        matches!(e, Event::Incoming { .. })
    }) {
        Event::Incoming { call, .. } => call,
        _ => unreachable!(),
    };
    std::thread::sleep(Duration::from_millis(700));
    b.send(Command::Answer { call: incoming });
    let call = established(&mut a_ev);
    std::thread::sleep(Duration::from_millis(300));
    a.send(Command::Hangup { call });
    wait_for(&mut b_ev, "ended", |e| {
        matches!(
            e,
            Event::Call {
                state: CallState::Ended,
                ..
            }
        )
    });
    let (_, devices) = stats(&b, &mut b_ev);
    assert_eq!(devices.ring_opens, 1, "{devices:?}");
    assert!(devices.ring_frames_played >= 30, "{devices:?}");
    a.shutdown();
    b.shutdown();
    let candidates = [RING_HZ.0, 440.0, 1000.0];
    let rang = read_wav(&ring).unwrap().samples;
    assert!(rang.len() >= 24_000, "{}", rang.len());
    assert_eq!(
        dominant_tone(&rang[..24_000], 48_000, &candidates).map(|t| t.0),
        Some(RING_HZ.0),
        "the ring device rang"
    );
    let played = read_wav(&out).unwrap().samples;
    let loudest = played
        .iter()
        .map(|&s| i32::from(s).abs())
        .max()
        .unwrap_or(0);
    assert!(
        loudest < 200,
        "no ring tone on the call output (peak {loudest})"
    );
}

#[test]
fn a_ring_tone_file_is_looped_while_a_call_rings() {
    let dir = tempfile::tempdir().unwrap();
    let (out, tone) = (dir.path().join("out.wav"), dir.path().join("tone.wav"));
    // 300 ms of 600 Hz at 16 kHz: the engine converts and loops it.
    let mut w = dialtone::engine::media::wav::WavWriter::create(&tone, 16_000).unwrap();
    let mut samples = vec![0i16; 4_800];
    dialtone::engine::media::tone::ToneGenerator::new(600.0, -10.0, 16_000).fill(&mut samples);
    w.write(&samples).unwrap();
    w.finish().unwrap();
    let (a, _a_ev) = engine("silence", "null", false);
    let (b, mut b_ev) = Engine::spawn(
        Settings {
            listen: "127.0.0.1:0".into(),
            rtp_ports: rtp_range(),
            audio_in: "silence".into(),
            audio_out: format!("wav:{}", out.display()),
            ring_tone: format!("wav:{}", tone.display()),
            ..Settings::default()
        },
        None,
    )
    .expect("engine starts");
    a.send(Command::Call {
        uri: format!("sip:b@{}", b.local_addr()),
        account: None,
    });
    wait_for(&mut b_ev, "incoming", |e| {
        matches!(e, Event::Incoming { .. })
    });
    std::thread::sleep(Duration::from_millis(1000));
    a.shutdown();
    b.shutdown();
    let played = read_wav(&out).unwrap().samples;
    assert!(played.len() >= 38_400, "{}", played.len());
    // Past the first loop of the file: it goes on.
    let found = dominant_tone(&played[19_200..38_400], 48_000, &[600.0, 880.0]);
    assert_eq!(found.map(|t| t.0), Some(600.0), "{found:?}");
}

#[test]
fn the_test_tone_plays_one_second_of_440_hz_on_the_output_or_the_ring_device() {
    let dir = tempfile::tempdir().unwrap();
    let (out, ring) = (dir.path().join("out.wav"), dir.path().join("ring.wav"));
    let (e, mut ev) = Engine::spawn(
        Settings {
            listen: "127.0.0.1:0".into(),
            rtp_ports: rtp_range(),
            audio_in: "silence".into(),
            audio_out: format!("wav:{}", out.display()),
            ring_out: format!("wav:{}", ring.display()),
            ..Settings::default()
        },
        None,
    )
    .expect("engine starts");
    e.send(Command::PlayTestTone { ring: false });
    std::thread::sleep(Duration::from_millis(1400));
    e.send(Command::PlayTestTone { ring: true });
    std::thread::sleep(Duration::from_millis(1400));
    let (_, devices) = stats(&e, &mut ev);
    assert_eq!(devices.frames_played, 50, "{devices:?}");
    assert_eq!(devices.ring_frames_played, 50, "{devices:?}");
    e.shutdown();
    for path in [&out, &ring] {
        let s = read_wav(path).unwrap().samples;
        assert_eq!(s.len(), 48_000, "one second: {}", path.display());
        let found = dominant_tone(&s, 48_000, &[440.0, 1000.0]);
        assert_eq!(found.map(|t| t.0), Some(440.0), "{}", path.display());
    }
}

#[test]
fn monitoring_the_input_gives_levels_with_no_call_and_stopping_it_stops_the_clock() {
    let (e, mut ev) = engine("tone:440", "null", false);
    e.send(Command::MonitorInput { on: true });
    std::thread::sleep(Duration::from_millis(1000));
    let mut levels = Vec::new();
    while let Ok(x) = ev.try_recv() {
        if let Event::Levels { input_dbfs, calls } = x {
            assert!(calls.is_empty());
            levels.push(input_dbfs);
        }
    }
    assert!((6..=12).contains(&levels.len()), "{levels:?}");
    let last = *levels.last().unwrap();
    assert!((-14.5..=-11.5).contains(&last), "{last}");
    let (_, devices) = stats(&e, &mut ev);
    assert!(devices.monitoring);
    e.send(Command::MonitorInput { on: false });
    let (_, off) = stats(&e, &mut ev);
    assert!(!off.monitoring);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        std::iter::from_fn(|| ev.try_recv().ok()).all(|x| !matches!(x, Event::Levels { .. })),
        "no levels once off"
    );
    let (_, later) = stats(&e, &mut ev);
    assert_eq!(
        later.frames_captured, off.frames_captured,
        "no capture (and no clock) once off"
    );
}
