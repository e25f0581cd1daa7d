//! Dialtone (`dialtone --headless`, as a child process) against real SIP peers on 127.0.0.1, over
//! UDP and over TCP: Kamailio as registrar and proxy (digest auth), sipp as caller and as echo UAS,
//! baresip as the far end. Every test has its own ports and its own Kamailio, so they run in
//! parallel. Dialtone is `carol` (password `carolpw`); baresip is `alice` (and `bob`).

mod common;

use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use common::dialtone::*;
use common::peers::*;
use serde_json::Value;

/// What baresip 1.0 logs when it gets a re-INVITE (hold, resume).
const BARESIP_REINVITE: &str = "call: got re-INVITE (SDP Offer)";

/// Dialtone as `carol` at `kam` over `transport`, with its own SIP port and RTP ports from `ports`.
fn start_carol(
    ports: &PortBlock,
    kam: &Kamailio,
    transport: Transport,
    password: &str,
    extra: &[&str],
) -> Result<Dialtone> {
    let listen = format!("{HOST}:{}", ports.port());
    let (rtp_first, rtp_last) = ports.rtp_ports(10);
    let mut args = vec![
        "--account".to_string(),
        kam.uri("carol"),
        "--password".into(),
        password.into(),
        "--transport".into(),
        transport.as_str().into(),
        "--listen".into(),
        listen,
        "--rtp-ports".into(),
        format!("{rtp_first}-{rtp_last}"),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    Dialtone::start(&format!("carol-{}", transport.as_str()), args)
}

/// [`start_carol`] with the right password, waiting until she is registered.
fn registered_carol(
    ports: &PortBlock,
    kam: &Kamailio,
    transport: Transport,
    extra: &[&str],
) -> Result<Dialtone> {
    let mut carol = start_carol(ports, kam, transport, "carolpw", extra)?;
    let registered = carol.wait_event(registration("registered"), WAIT)?;
    ensure!(registered["code"] == 200, "{registered}");
    Ok(carol)
}

/// baresip `user` registered at `kam` over `transport`.
fn baresip(
    ports: &PortBlock,
    kam: &Kamailio,
    user: &str,
    transport: Transport,
    answer: AnswerMode,
) -> Result<Baresip> {
    Baresip::start(
        BaresipConfig::from_ports(user, ports)
            .registrar(kam.port())
            .transport(transport)
            .answer_mode(answer),
    )
}

/// The `calls` of a `stats` event.
fn stats_calls(stats: &Value) -> Vec<Value> {
    stats["calls"].as_array().cloned().unwrap_or_default()
}

/// Checks what every test ends with: no `error` event, no stdout line that is not JSON, and (from
/// its debug log) every SIP message sent and received over `transport`.
fn assert_clean(dialtone: &Dialtone, transport: Transport) {
    let bad: Vec<_> = dialtone
        .events()
        .into_iter()
        .filter(|e| e["event"] == "error" || e["event"] == "non_json")
        .collect();
    assert!(bad.is_empty(), "{bad:?}\n{}", dialtone.report());
    let log = dialtone.log();
    // `-> INVITE sip:… to tcp:127.0.0.1:5060`, `<- 200 OK (INVITE) from udp:127.0.0.1:5060`
    let sip_lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("-> ") || l.contains("<- "))
        .collect();
    let used = format!("{}:", transport.as_str());
    assert!(
        sip_lines.iter().any(|l| l.contains(&used)),
        "no SIP over {transport:?} in the log\n{}",
        dialtone.report()
    );
    let other = match transport {
        Transport::Udp => " tcp:",
        Transport::Tcp => " udp:",
    };
    let wrong: Vec<_> = sip_lines.iter().filter(|l| l.contains(other)).collect();
    assert!(wrong.is_empty(), "SIP over{other}: {wrong:#?}");
}

/// `sip:USER@127.0.0.1:PORT` at `kam` with `;transport=tcp` for TCP (baresip dials over it).
fn aor(kam: &Kamailio, user: &str, transport: Transport) -> String {
    match transport {
        Transport::Udp => kam.uri(user),
        Transport::Tcp => format!("{};transport=tcp", kam.uri(user)),
    }
}

// ---------------------------------------------------------------------------------------------------
// Registration

/// Registers with digest auth; on `quit` un-registers (`unregistered`, `stopped`, exit 0), after
/// which Kamailio has no binding for carol: a call to her gets 404.
fn registers_and_unregisters_on_quit(transport: Transport) -> Result<()> {
    let ports = PortBlock::acquire();
    let kam = Kamailio::start(ports.port(), ports.port())?;
    let mut alice = baresip(&ports, &kam, "alice", Transport::Udp, AnswerMode::Auto)?;
    let mut carol = start_carol(&ports, &kam, transport, "carolpw", &[])?;
    carol.wait_event(registration("registering"), WAIT)?;
    let registered = carol.wait_event(registration("registered"), WAIT)?;
    assert_eq!(registered["code"], 200, "{registered}");
    assert_eq!(registered["aor"], "sip:carol@127.0.0.1", "{registered}");

    // The binding works: a call to carol reaches Dialtone (which rings; alice gives up).
    alice.dial(&kam.uri("carol"))?;
    let incoming = carol.wait_event(is_event("incoming"), WAIT)?;
    alice.hangup()?;
    carol.wait_event(call_state_of(call_id(&incoming), "ended"), WAIT)?;

    carol.send("quit")?;
    let unregistered = carol.wait_event(registration("unregistered"), WAIT)?;
    assert_eq!(unregistered["code"], 200, "{unregistered}");
    carol.wait_event(is_event("stopped"), WAIT)?;
    let status = carol.wait_exit(WAIT)?;
    assert!(status.success(), "{status}\n{}", carol.report());

    // Kamailio has forgotten carol.
    let mark = alice.mark();
    alice.dial(&kam.uri("carol"))?;
    alice.wait_for_after(mark, "session closed: 404 Not Found", WAIT)?;
    assert_clean(&carol, transport);
    Ok(())
}

#[test]
fn registers_and_unregisters_on_quit_udp() -> Result<()> {
    registers_and_unregisters_on_quit(Transport::Udp)
}

#[test]
fn registers_and_unregisters_on_quit_tcp() -> Result<()> {
    registers_and_unregisters_on_quit(Transport::Tcp)
}

/// A wrong password: `failed` with code 401 at once (no retry loop against the 401s).
fn wrong_password_fails_with_401(transport: Transport) -> Result<()> {
    let ports = PortBlock::acquire();
    let kam = Kamailio::start(ports.port(), ports.port())?;
    let started = Instant::now();
    let mut carol = start_carol(&ports, &kam, transport, "wrong", &[])?;
    let failed = carol.wait_event(registration("failed"), Duration::from_secs(2))?;
    let took = started.elapsed();
    assert_eq!(failed["code"], 401, "{failed}");
    assert!(took < Duration::from_secs(2), "failed after {took:?}");
    carol.expect_no_event(registration("registered"), Duration::from_millis(300))?;
    // Still alive and answering.
    assert_eq!(stats_calls(&carol.stats(WAIT)?).len(), 0);
    assert_clean(&carol, transport);
    Ok(())
}

#[test]
fn wrong_password_fails_with_401_udp() -> Result<()> {
    wrong_password_fails_with_401(Transport::Udp)
}

#[test]
fn wrong_password_fails_with_401_tcp() -> Result<()> {
    wrong_password_fails_with_401(Transport::Tcp)
}

// ---------------------------------------------------------------------------------------------------
// sipp

/// sipp calls carol through Kamailio; Dialtone auto-answers; sipp hangs up after 1 s.
fn sipp_calls_dialtone(transport: Transport) -> Result<()> {
    let ports = PortBlock::acquire();
    let kam = Kamailio::start(ports.port(), ports.port())?;
    let mut carol = registered_carol(&ports, &kam, transport, &["--auto-answer"])?;
    let (rtp, _) = ports.rtp_ports(4);
    let call = SippUac::new(ports.sip_port(), rtp)
        .transport(transport)
        .hold(Duration::from_secs(1))
        .run(kam.port(), "carol")?;
    assert!(call.success(), "{call}\n{}", carol.report());
    let incoming = carol.wait_event(is_event("incoming"), WAIT)?;
    let id = call_id(&incoming);
    assert!(
        incoming["from"].as_str().unwrap_or("").contains("sipp@"),
        "{incoming}"
    );
    carol.wait_event(call_state_of(id, "established"), WAIT)?;
    let ended = carol.wait_event(call_state_of(id, "ended"), WAIT)?;
    assert_eq!(ended["reason"], "remote_hangup", "{ended}");
    assert_eq!(stats_calls(&carol.stats(WAIT)?).len(), 0);
    assert_clean(&carol, transport);
    Ok(())
}

#[test]
fn sipp_calls_dialtone_udp() -> Result<()> {
    sipp_calls_dialtone(Transport::Udp)
}

#[test]
fn sipp_calls_dialtone_tcp() -> Result<()> {
    sipp_calls_dialtone(Transport::Tcp)
}

/// Dialtone calls the sipp echo UAS through Kamailio, which demands auth (407); PCMU is agreed;
/// Dialtone hangs up and sipp completes its scenario (it got the BYE and answered it).
fn dialtone_calls_sipp_echo(transport: Transport) -> Result<()> {
    let ports = PortBlock::acquire();
    let kam = Kamailio::start(ports.port(), ports.sip_port())?;
    let (uas_rtp, _) = ports.rtp_ports(4);
    let mut uas = SippUas::start_for_calls(kam.echo_port(), uas_rtp, 1)?;
    let mut carol = registered_carol(&ports, &kam, transport, &[])?;
    carol.send(&format!("call sip:echo@{HOST}:{}", kam.port()))?;
    let calling = carol.wait_event(call_state("calling"), WAIT)?;
    let id = call_id(&calling);
    carol.wait_event(call_state_of(id, "established"), WAIT)?;
    let calls = stats_calls(&carol.stats(WAIT)?);
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0]["codec"], "PCMU/8000", "{calls:?}");
    assert_eq!(calls[0]["state"], "established", "{calls:?}");
    assert_eq!(calls[0]["direction"], "outgoing", "{calls:?}");
    assert_eq!(
        calls[0]["remote_media"],
        format!("{HOST}:{uas_rtp}"),
        "{calls:?}"
    );
    // Our RTP goes out and sipp's echo brings it back (PCMU, from the capture hub).
    std::thread::sleep(Duration::from_millis(600));
    let calls = stats_calls(&carol.stats(WAIT)?);
    let media = &calls[0]["media"];
    assert!(
        media["packets_sent"].as_u64().unwrap_or(0) >= 20,
        "{calls:?}"
    );
    assert!(
        media["packets_received"].as_u64().unwrap_or(0) >= 15,
        "{calls:?}"
    );
    // Kamailio challenged the INVITE and Dialtone answered it.
    assert!(
        carol
            .log()
            .contains("<- 407 Proxy Authentication Required (INVITE)"),
        "no 407 in the log\n{}",
        carol.report()
    );

    carol.send(&format!("hangup {id}"))?;
    let ended = carol.wait_event(call_state_of(id, "ended"), WAIT)?;
    assert_eq!(ended["reason"], "local_hangup", "{ended}");
    // sipp -m 1 exits 0 once its scenario (… BYE, 200) completed, 2 s after the BYE.
    let status = uas.wait_exit(WAIT)?;
    assert!(
        status.success(),
        "sipp UAS: {status}\n{}\n{}\n{}",
        uas.errors(),
        uas.log(),
        carol.report()
    );
    assert_eq!(uas.errors(), "");
    assert_clean(&carol, transport);
    Ok(())
}

#[test]
fn dialtone_calls_sipp_echo_udp() -> Result<()> {
    dialtone_calls_sipp_echo(Transport::Udp)
}

#[test]
fn dialtone_calls_sipp_echo_tcp() -> Result<()> {
    dialtone_calls_sipp_echo(Transport::Tcp)
}

// ---------------------------------------------------------------------------------------------------
// baresip

/// Dialtone calls baresip alice (auto-answer), holds, resumes and hangs up; then alice calls
/// Dialtone, which answers; alice holds, resumes and hangs up.
fn baresip_and_dialtone_call_both_ways(transport: Transport) -> Result<()> {
    let ports = PortBlock::acquire();
    let kam = Kamailio::start(ports.port(), ports.port())?;
    let mut alice = baresip(&ports, &kam, "alice", transport, AnswerMode::Auto)?;
    let mut carol = registered_carol(&ports, &kam, transport, &[])?;

    // Dialtone → baresip
    carol.send(&format!("call {}", kam.uri("alice")))?;
    let calling = carol.wait_event(call_state("calling"), WAIT)?;
    let id = call_id(&calling);
    carol.wait_event(call_state_of(id, "established"), WAIT)?;
    alice.wait_for(baresip_log::CALL_ESTABLISHED, WAIT)?;
    let calls = stats_calls(&carol.stats(WAIT)?);
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert!(
        ["PCMU/8000", "PCMA/8000"].contains(&calls[0]["codec"].as_str().unwrap_or("")),
        "{calls:?}"
    );

    let mark = alice.mark();
    carol.send(&format!("hold {id}"))?;
    let held = carol.wait_event(call_state_of(id, "held"), WAIT)?;
    assert_eq!(held["hold"]["local"], true, "{held}");
    assert_eq!(held["hold"]["remote"], false, "{held}");
    // baresip 1.0 logs the re-INVITE, not the direction.
    alice.wait_for_after(mark, BARESIP_REINVITE, WAIT)?;
    let mark = alice.mark();
    carol.send(&format!("resume {id}"))?;
    carol.wait_event(call_state_of(id, "established"), WAIT)?;
    alice.wait_for_after(mark, BARESIP_REINVITE, WAIT)?;
    assert!(
        !alice.log_contains(baresip_log::CLOSED_BY_PEER),
        "{}",
        alice.log()
    );

    carol.send(&format!("hangup {id}"))?;
    let ended = carol.wait_event(call_state_of(id, "ended"), WAIT)?;
    assert_eq!(ended["reason"], "local_hangup", "{ended}");
    alice.wait_for(baresip_log::CLOSED_BY_PEER, WAIT)?;

    // baresip → Dialtone
    let mark = alice.mark();
    alice.dial(&aor(&kam, "carol", transport))?;
    let incoming = carol.wait_event(is_event("incoming"), WAIT)?;
    assert!(
        incoming["from"].as_str().unwrap_or("").contains("alice@"),
        "{incoming}"
    );
    let id = call_id(&incoming);
    carol.send(&format!("answer {id}"))?;
    carol.wait_event(call_state_of(id, "established"), WAIT)?;
    alice.wait_for_after(mark, baresip_log::CALL_ESTABLISHED, WAIT)?;
    // alice holds and resumes: Dialtone sees the far end's hold.
    alice.command("/hold")?;
    let held = carol.wait_event(call_state_of(id, "held"), WAIT)?;
    assert_eq!(held["hold"]["remote"], true, "{held}");
    assert_eq!(held["hold"]["local"], false, "{held}");
    alice.command("/resume")?;
    carol.wait_event(call_state_of(id, "established"), WAIT)?;
    alice.hangup()?;
    let ended = carol.wait_event(call_state_of(id, "ended"), WAIT)?;
    assert_eq!(ended["reason"], "remote_hangup", "{ended}");
    assert_eq!(stats_calls(&carol.stats(WAIT)?).len(), 0);
    assert_clean(&carol, transport);
    Ok(())
}

#[test]
fn baresip_and_dialtone_call_both_ways_udp() -> Result<()> {
    baresip_and_dialtone_call_both_ways(Transport::Udp)
}

#[test]
fn baresip_and_dialtone_call_both_ways_tcp() -> Result<()> {
    baresip_and_dialtone_call_both_ways(Transport::Tcp)
}

/// Audio with a real peer: baresip's 440 Hz tone (its aufile microphone) comes out of Dialtone's
/// recorded output, and Dialtone's RTP (from the capture hub) reaches baresip.
#[test]
fn baresip_tone_is_heard_in_dialtones_recording() -> Result<()> {
    use dialtone::engine::media::{tone::dominant_tone, wav::read_wav};
    let dir = tempfile::tempdir()?;
    let rec = dir.path().join("carol.wav");
    let ports = PortBlock::acquire();
    let kam = Kamailio::start(ports.port(), ports.port())?;
    let mut alice = baresip(&ports, &kam, "alice", Transport::Udp, AnswerMode::Auto)?;
    let out = format!("wav:{}", rec.display());
    let mut carol = registered_carol(&ports, &kam, Transport::Udp, &["--audio-out", &out])?;
    carol.send(&format!("call {}", kam.uri("alice")))?;
    let calling = carol.wait_event(call_state("calling"), WAIT)?;
    let id = call_id(&calling);
    carol.wait_event(call_state_of(id, "established"), WAIT)?;
    alice.wait_for(baresip_log::AUDIO_RECEIVED, WAIT)?;
    std::thread::sleep(Duration::from_millis(1500));
    let calls = stats_calls(&carol.stats(WAIT)?);
    let media = &calls[0]["media"];
    assert!(
        media["packets_received"].as_u64().unwrap_or(0) >= 50,
        "{calls:?}"
    );
    assert!(
        media["packets_sent"].as_u64().unwrap_or(0) >= 50,
        "{calls:?}"
    );
    carol.send(&format!("hangup {id}"))?;
    carol.wait_event(call_state_of(id, "ended"), WAIT)?;
    // Quitting flushes the recording.
    drop(carol);
    let wav = read_wav(&rec).map_err(|e| anyhow::anyhow!("{}: {e}", rec.display()))?;
    let n = wav.samples.len();
    ensure!(n >= 48_000, "recording too short: {n} samples");
    let tone = dominant_tone(
        &wav.samples[n - 48_000..n - 4_800],
        wav.rate,
        &[440.0, 1000.0],
    );
    let Some((freq, dbfs)) = tone else {
        anyhow::bail!("no tone in Dialtone's recording of baresip");
    };
    assert_eq!(freq, 440.0);
    assert!(dbfs > -30.0, "{dbfs} dBFS");
    Ok(())
}

/// baresip calls Dialtone, which rings: `reject` → baresip gets 486 and Dialtone ends `declined`;
/// a second call that baresip gives up on while Dialtone rings ends `cancelled`.
fn dialtone_rejects_and_caller_cancels(transport: Transport) -> Result<()> {
    let ports = PortBlock::acquire();
    let kam = Kamailio::start(ports.port(), ports.port())?;
    let mut alice = baresip(&ports, &kam, "alice", transport, AnswerMode::Auto)?;
    let mut carol = registered_carol(&ports, &kam, transport, &[])?;

    alice.dial(&aor(&kam, "carol", transport))?;
    let incoming = carol.wait_event(is_event("incoming"), WAIT)?;
    let id = call_id(&incoming);
    carol.wait_event(call_state_of(id, "ringing"), WAIT)?;
    carol.send("reject")?;
    let ended = carol.wait_event(call_state_of(id, "ended"), WAIT)?;
    assert_eq!(ended["reason"], "declined", "{ended}");
    assert_eq!(ended["code"], 486, "{ended}");
    alice.wait_for("session closed: 486 Busy Here", WAIT)?;
    assert!(!alice.log_contains(baresip_log::CALL_ESTABLISHED));

    let mark = alice.mark();
    alice.dial(&aor(&kam, "carol", transport))?;
    let incoming = carol.wait_event(is_event("incoming"), WAIT)?;
    let id = call_id(&incoming);
    carol.wait_event(call_state_of(id, "ringing"), WAIT)?;
    alice.hangup()?;
    alice.wait_for_after(mark, baresip_log::HUNG_UP, WAIT)?;
    let ended = carol.wait_event(call_state_of(id, "ended"), WAIT)?;
    assert_eq!(ended["reason"], "cancelled", "{ended}");
    assert_eq!(stats_calls(&carol.stats(WAIT)?).len(), 0);
    assert_clean(&carol, transport);
    Ok(())
}

#[test]
fn dialtone_rejects_and_caller_cancels_udp() -> Result<()> {
    dialtone_rejects_and_caller_cancels(Transport::Udp)
}

#[test]
fn dialtone_rejects_and_caller_cancels_tcp() -> Result<()> {
    dialtone_rejects_and_caller_cancels(Transport::Tcp)
}

/// `quit` during a call: Dialtone hangs up (BYE), un-registers, stops and exits 0.
#[test]
fn quit_during_a_call_hangs_up_first() -> Result<()> {
    let ports = PortBlock::acquire();
    let kam = Kamailio::start(ports.port(), ports.port())?;
    let mut alice = baresip(&ports, &kam, "alice", Transport::Udp, AnswerMode::Auto)?;
    let mut carol = registered_carol(&ports, &kam, Transport::Udp, &[])?;
    carol.send(&format!("call {}", kam.uri("alice")))?;
    let id = call_id(&carol.wait_event(call_state("calling"), WAIT)?);
    carol.wait_event(call_state_of(id, "established"), WAIT)?;
    alice.wait_for(baresip_log::CALL_ESTABLISHED, WAIT)?;
    carol.send("quit")?;
    let ended = carol.wait_event(call_state_of(id, "ended"), WAIT)?;
    assert_eq!(ended["reason"], "local_hangup", "{ended}");
    carol.wait_event(registration("unregistered"), WAIT)?;
    carol.wait_event(is_event("stopped"), WAIT)?;
    let status = carol.wait_exit(WAIT)?;
    assert!(status.success(), "{status}\n{}", carol.report());
    alice.wait_for(baresip_log::CLOSED_BY_PEER, WAIT)?;
    assert_clean(&carol, Transport::Udp);
    Ok(())
}

/// alice and bob call Dialtone (auto-answer) at the same time: two established calls; one ends
/// from Dialtone's side, the other from bob's.
#[test]
fn two_simultaneous_calls() -> Result<()> {
    let ports = PortBlock::acquire();
    let kam = Kamailio::start(ports.port(), ports.port())?;
    let mut alice = baresip(&ports, &kam, "alice", Transport::Udp, AnswerMode::Auto)?;
    let mut bob = baresip(&ports, &kam, "bob", Transport::Tcp, AnswerMode::Auto)?;
    let mut carol = registered_carol(&ports, &kam, Transport::Udp, &["--auto-answer"])?;

    alice.dial(&kam.uri("carol"))?;
    bob.dial(&aor(&kam, "carol", Transport::Tcp))?;
    alice.wait_for(baresip_log::CALL_ESTABLISHED, WAIT)?;
    bob.wait_for(baresip_log::CALL_ESTABLISHED, WAIT)?;
    let first = carol.wait_event_any(call_state("established"), WAIT)?;
    let first_id = call_id(&first);
    let second = carol.wait_event_any(
        |e| call_state("established")(e) && e["call"] != first_id,
        WAIT,
    )?;
    let second_id = call_id(&second);
    let calls = stats_calls(&carol.stats(WAIT)?);
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert!(
        calls.iter().all(|c| c["state"] == "established"
            && c["direction"] == "incoming"
            && c["codec"].is_string()),
        "{calls:?}"
    );
    let ports_used: Vec<_> = calls.iter().map(|c| &c["local_rtp_port"]).collect();
    assert_ne!(ports_used[0], ports_used[1], "{calls:?}");
    let peer_of = |id: u64| {
        calls
            .iter()
            .find(|c| c["call"] == id)
            .and_then(|c| c["peer"].as_str())
            .unwrap_or_default()
            .to_string()
    };
    let (alice_id, bob_id) = if peer_of(first_id).contains("alice@") {
        (first_id, second_id)
    } else {
        (second_id, first_id)
    };
    assert!(peer_of(alice_id).contains("alice@"), "{calls:?}");
    assert!(peer_of(bob_id).contains("bob@"), "{calls:?}");

    carol.send(&format!("hangup {alice_id}"))?;
    let ended = carol.wait_event_any(call_state_of(alice_id, "ended"), WAIT)?;
    assert_eq!(ended["reason"], "local_hangup", "{ended}");
    alice.wait_for(baresip_log::CLOSED_BY_PEER, WAIT)?;
    // bob's call is untouched.
    let calls = stats_calls(&carol.stats(WAIT)?);
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0]["call"], bob_id, "{calls:?}");
    assert_eq!(calls[0]["state"], "established", "{calls:?}");

    bob.hangup()?;
    let ended = carol.wait_event_any(call_state_of(bob_id, "ended"), WAIT)?;
    assert_eq!(ended["reason"], "remote_hangup", "{ended}");
    assert_eq!(stats_calls(&carol.stats(WAIT)?).len(), 0);
    assert_clean(&carol, Transport::Udp);
    Ok(())
}

// ---------------------------------------------------------------------------------------------------
// A registrar that goes away

/// Kamailio dies while Dialtone is registered and idle: `register 0` fails without a hang or a
/// crash, Dialtone still answers `stats`, and registers again once Kamailio is back; `quit` stops
/// it. Over TCP the refused connection fails the REGISTER at once; over UDP nothing answers
/// (ICMP port unreachable is not reported on an unconnected socket), so it fails when timer F
/// fires, 64*T1 = 32 s later.
fn kamailio_dies_while_registered(transport: Transport, failure_within: Duration) -> Result<()> {
    let ports = PortBlock::acquire();
    let kam_port = ports.port();
    let mut kam = Kamailio::start(kam_port, ports.port())?;
    let mut carol = registered_carol(&ports, &kam, transport, &[])?;
    kam.kill()?;
    let started = Instant::now();
    carol.send("register 0")?;
    // Answers at once while the REGISTER is still out.
    assert_eq!(stats_calls(&carol.stats(Duration::from_secs(1))?).len(), 0);
    let failed = carol.wait_event(registration("failed"), failure_within)?;
    eprintln!("register failed after {:?}: {failed}", started.elapsed());
    assert_eq!(stats_calls(&carol.stats(WAIT)?).len(), 0);

    // Kamailio is back (with no bindings): registering works again.
    let kam = Kamailio::start(kam_port, ports.port())?;
    carol.send("register 0")?;
    let registered = carol.wait_event(registration("registered"), WAIT)?;
    assert_eq!(registered["code"], 200, "{registered}");
    carol.send("quit")?;
    carol.wait_event(registration("unregistered"), WAIT)?;
    carol.wait_event(is_event("stopped"), WAIT)?;
    let status = carol.wait_exit(WAIT)?;
    assert!(status.success(), "{status}\n{}", carol.report());
    drop(kam);
    Ok(())
}

#[test]
fn kamailio_dies_while_registered_tcp() -> Result<()> {
    kamailio_dies_while_registered(Transport::Tcp, Duration::from_secs(2))
}

#[test]
fn kamailio_dies_while_registered_udp() -> Result<()> {
    kamailio_dies_while_registered(Transport::Udp, Duration::from_secs(40))
}

/// Kamailio dies with a REGISTER of Dialtone's unanswered on its TCP connection: the closed
/// connection fails the REGISTER at once (not after timer F, 32 s later).
#[test]
fn kamailio_dies_during_a_tcp_register() -> Result<()> {
    let ports = PortBlock::acquire();
    let mut kam = Kamailio::start(ports.port(), ports.port())?;
    let mut carol = registered_carol(&ports, &kam, Transport::Tcp, &[])?;
    // Frozen, Kamailio reads nothing: the REGISTER stays in its socket's receive queue.
    // SAFETY: plain syscall on the process group of our own (unreaped) child.
    unsafe {
        libc::kill(-(kam.pid() as libc::pid_t), libc::SIGSTOP);
    }
    carol.send("register 0")?;
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    kam.kill()?;
    let failed = carol.wait_event(registration("failed"), Duration::from_secs(2))?;
    eprintln!(
        "register failed {:?} after the kill: {failed}",
        started.elapsed()
    );
    assert_eq!(stats_calls(&carol.stats(WAIT)?).len(), 0);
    Ok(())
}

/// Kamailio closes Dialtone's idle TCP connection (as its default `tcp_connection_lifetime` does
/// after 120 s): carol must stay reachable, i.e. Kamailio must be able to open a connection to
/// the Contact she registered.
#[test]
fn dialtone_stays_reachable_when_kamailio_closes_the_tcp_connection() -> Result<()> {
    let ports = PortBlock::acquire();
    let kam = Kamailio::start_with(ports.port(), ports.port(), "tcp_connection_lifetime=1")?;
    let mut alice = baresip(&ports, &kam, "alice", Transport::Udp, AnswerMode::Auto)?;
    let mut carol = registered_carol(&ports, &kam, Transport::Tcp, &["--auto-answer"])?;
    // Kamailio closes it some 10 s later (its timers are coarse).
    let deadline = Instant::now() + Duration::from_secs(30);
    while tcp_connected(kam.port()) {
        ensure!(
            Instant::now() < deadline,
            "Kamailio kept the connection\n{}",
            carol.report()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    alice.dial(&kam.uri("carol"))?;
    let incoming = carol.wait_event(is_event("incoming"), WAIT)?;
    let id = call_id(&incoming);
    carol.wait_event(call_state_of(id, "established"), WAIT)?;
    alice.wait_for(baresip_log::CALL_ESTABLISHED, WAIT)?;
    alice.hangup()?;
    let ended = carol.wait_event(call_state_of(id, "ended"), WAIT)?;
    assert_eq!(ended["reason"], "remote_hangup", "{ended}");
    assert_clean(&carol, Transport::Tcp);
    Ok(())
}

// ---------------------------------------------------------------------------------------------------
// SDES-SRTP

/// The one call in a `stats` event, checked to be SRTP with media both ways and no SRTP failure.
fn assert_srtp_media(carol: &mut Dialtone) -> Result<()> {
    let calls = stats_calls(&carol.stats(WAIT)?);
    ensure!(calls.len() == 1, "{calls:?}");
    assert_eq!(calls[0]["srtp"], true, "{calls:?}");
    let media = &calls[0]["media"];
    assert!(
        media["packets_received"].as_u64().unwrap_or(0) >= 50,
        "{calls:?}"
    );
    assert!(
        media["packets_sent"].as_u64().unwrap_or(0) >= 50,
        "{calls:?}"
    );
    assert_eq!(media["srtp_failures"], 0, "{calls:?}");
    // baresip opens its RTCP "NAT pinhole" with an APP packet (name PING, data PONG) sent
    // twice when its stream starts: once in the clear, 16 bytes with no SRTCP index or tag,
    // before its SRTP filter is on the socket, then again as SRTCP. RFC 3711 (3.4) makes
    // authentication mandatory for SRTCP, so the clear one is rightly dropped and counted (when
    // it arrives after our socket is open: on calls we answer); anything more is a real failure.
    assert!(
        media["srtcp_failures"].as_u64().unwrap_or(u64::MAX) <= 1,
        "{calls:?}"
    );
    Ok(())
}

/// Dialtone with `--srtp sdes-mandatory` and baresip with `mediaenc=srtp-mand` call each other
/// through Kamailio: RTP/SAVP both ways, baresip authenticates and decrypts Dialtone's packets
/// (it logs incoming RTP only for packets that pass), Dialtone decrypts baresip's (no SRTP
/// failure, baresip's tone in the recording), and no key reaches Dialtone's log.
#[test]
fn srtp_calls_with_baresip_both_ways() -> Result<()> {
    use dialtone::engine::media::{tone::dominant_tone, wav::read_wav};
    let dir = tempfile::tempdir()?;
    let rec = dir.path().join("carol.wav");
    let ports = PortBlock::acquire();
    let kam = Kamailio::start(ports.port(), ports.port())?;
    let mut alice = Baresip::start(
        BaresipConfig::from_ports("alice", &ports)
            .registrar(kam.port())
            .answer_mode(AnswerMode::Auto)
            .media_enc("srtp-mand"),
    )?;
    let out = format!("wav:{}", rec.display());
    let mut carol = registered_carol(
        &ports,
        &kam,
        Transport::Udp,
        &["--srtp", "sdes-mandatory", "--audio-out", &out],
    )?;

    // Dialtone → baresip
    carol.send(&format!("call {}", kam.uri("alice")))?;
    let id = call_id(&carol.wait_event(call_state("calling"), WAIT)?);
    carol.wait_event(call_state_of(id, "established"), WAIT)?;
    alice.wait_for(baresip_log::CALL_ESTABLISHED, WAIT)?;
    alice.wait_for(baresip_log::AUDIO_RECEIVED, WAIT)?;
    std::thread::sleep(Duration::from_millis(1500));
    assert_srtp_media(&mut carol)?;
    carol.send(&format!("hangup {id}"))?;
    carol.wait_event(call_state_of(id, "ended"), WAIT)?;
    alice.wait_for(baresip_log::CLOSED_BY_PEER, WAIT)?;

    // baresip → Dialtone
    let mark = alice.mark();
    alice.dial(&kam.uri("carol"))?;
    let id = call_id(&carol.wait_event(is_event("incoming"), WAIT)?);
    carol.send(&format!("answer {id}"))?;
    carol.wait_event(call_state_of(id, "established"), WAIT)?;
    alice.wait_for_after(mark, baresip_log::CALL_ESTABLISHED, WAIT)?;
    alice.wait_for_after(mark, baresip_log::AUDIO_RECEIVED, WAIT)?;
    std::thread::sleep(Duration::from_millis(1500));
    assert_srtp_media(&mut carol)?;
    alice.hangup()?;
    let ended = carol.wait_event(call_state_of(id, "ended"), WAIT)?;
    assert_eq!(ended["reason"], "remote_hangup", "{ended}");
    assert_clean(&carol, Transport::Udp);
    let log = carol.log();
    assert!(!log.contains("inline:"), "a key in the log:\n{log}");
    let events = format!("{:?}", carol.events());
    assert!(!events.contains("inline:"), "a key in the events: {events}");

    // Quitting flushes the recording; its end is the second call.
    drop(carol);
    let wav = read_wav(&rec).map_err(|e| anyhow::anyhow!("{}: {e}", rec.display()))?;
    let n = wav.samples.len();
    ensure!(n >= 48_000, "recording too short: {n} samples");
    let tone = dominant_tone(
        &wav.samples[n - 48_000..n - 4_800],
        wav.rate,
        &[440.0, 1000.0],
    );
    let Some((freq, dbfs)) = tone else {
        anyhow::bail!("no tone in Dialtone's recording of baresip over SRTP");
    };
    assert_eq!(freq, 440.0);
    assert!(dbfs > -30.0, "{dbfs} dBFS");
    Ok(())
}

/// Dialtone with `--srtp sdes-mandatory` refuses baresip's plain RTP/AVP offer with 488, and
/// says why in an `error` event.
#[test]
fn srtp_mandatory_dialtone_refuses_a_plain_offer_with_488() -> Result<()> {
    let ports = PortBlock::acquire();
    let kam = Kamailio::start(ports.port(), ports.port())?;
    let mut alice = baresip(&ports, &kam, "alice", Transport::Udp, AnswerMode::Auto)?;
    let mut carol = registered_carol(&ports, &kam, Transport::Udp, &["--srtp", "sdes-mandatory"])?;
    alice.dial(&kam.uri("carol"))?;
    alice.wait_for("session closed: 488", WAIT)?;
    let error = carol.wait_event(is_event("error"), WAIT)?;
    assert!(
        error["message"]
            .as_str()
            .unwrap_or("")
            .contains("SRTP is mandatory"),
        "{error}"
    );
    assert!(carol.events().iter().all(|e| e["event"] != "incoming"));
    assert!(!alice.log_contains(baresip_log::CALL_ESTABLISHED));
    Ok(())
}
