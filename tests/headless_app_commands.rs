//! The headless front-end (`dialtone --headless`, a child process) driving what the desktop app's
//! settings page and echo test need: `--echo-test` calls the built-in echo service and hears its
//! own microphone back; `monitor on|off` meters the input with no call; `test-tone` plays 440 Hz;
//! `reconfigure FILE` applies a settings file live (a new microphone) and says what needs a
//! restart.
//! No real peers: everything is Dialtone on 127.0.0.1.

mod common;

use anyhow::Result;
use common::dialtone::*;
use common::peers::{HOST, PortBlock, WAIT};
use dialtone::engine::media::tone::dominant_tone;
use dialtone::engine::media::wav::read_wav;
use std::time::Duration;

/// `--listen` and `--rtp-ports` from a reserved block, and a settings file that does not exist
/// (the defaults), so the user's own settings never leak in.
fn own_ports(ports: &PortBlock, dir: &std::path::Path) -> Vec<String> {
    let (first, last) = ports.rtp_ports(10);
    vec![
        "--config".into(),
        dir.join("none.toml").display().to_string(),
        "--listen".into(),
        format!("{HOST}:{}", ports.port()),
        "--rtp-ports".into(),
        format!("{first}-{last}"),
    ]
}

#[test]
fn echo_test_option_calls_the_built_in_echo_service_and_hears_the_microphone_back() -> Result<()> {
    let ports = PortBlock::acquire();
    let dir = tempfile::tempdir()?;
    let heard = dir.path().join("heard.wav");
    let mut args = own_ports(&ports, dir.path());
    args.extend([
        "--echo-test".into(),
        "--audio-in".into(),
        "tone:440".into(),
        "--audio-out".into(),
        format!("wav:{}", heard.display()),
    ]);
    let mut d = Dialtone::start("echo-test", args)?;
    let up = d.wait_event(call_state("established"), WAIT)?;
    assert!(
        up["peer"]
            .as_str()
            .is_some_and(|p| p.starts_with("sip:echo@127.0.0.1:")),
        "{up}"
    );
    std::thread::sleep(Duration::from_millis(1500));
    d.send("quit")?;
    d.wait_event(is_event("stopped"), WAIT)?;
    d.wait_exit(WAIT)?;
    let rec = read_wav(&heard)?.samples;
    assert!(rec.len() >= 48_000, "{}", rec.len());
    let tail = &rec[rec.len() - 48_000..rec.len() - 9_600];
    let found = dominant_tone(tail, 48_000, &[440.0, 1000.0]);
    assert_eq!(found.map(|t| t.0), Some(440.0), "{found:?}");
    Ok(())
}

#[test]
fn settings_commands_meter_the_input_play_a_test_tone_and_reconfigure_live() -> Result<()> {
    let ports = PortBlock::acquire();
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("out.wav");
    let mut args = own_ports(&ports, dir.path());
    args.extend([
        "--levels".into(),
        "--audio-out".into(),
        format!("wav:{}", out.display()),
    ]);
    let mut d = Dialtone::start("settings", args)?;
    d.send("monitor on")?;
    let level = d.wait_event(is_event("levels"), WAIT)?;
    assert_eq!(level["calls"], serde_json::json!([]), "{level}");
    let stats = d.stats(WAIT)?;
    assert_eq!(stats["devices"]["monitoring"], true, "{stats}");
    d.send("monitor off")?;
    let stats = d.stats(WAIT)?;
    assert_eq!(stats["devices"]["monitoring"], false, "{stats}");
    d.expect_no_event(is_event("levels"), Duration::from_millis(400))?;

    d.send("test-tone")?;
    std::thread::sleep(Duration::from_millis(1300));
    let stats = d.stats(WAIT)?;
    assert_eq!(stats["devices"]["frames_played"], 50, "{stats}");

    // The same settings with another microphone, and another SIP port (needs a restart).
    let file = dir.path().join("new.toml");
    std::fs::write(
        &file,
        format!(
            "listen = \"{HOST}:{}\"\naudio_out = \"wav:{}\"\n\
             audio_in = \"tone:1000\"\nrtp_ports = \"{}-{}\"\n",
            ports.port() + 1,
            out.display(),
            ports.rtp_ports(10).0,
            ports.rtp_ports(10).1,
        ),
    )?;
    d.send(&format!("reconfigure {}", file.display()))?;
    let e = d.wait_event(is_event("error"), WAIT)?;
    assert!(
        e["message"]
            .as_str()
            .is_some_and(|m| m.contains("after a restart")),
        "{e}"
    );
    let stats = d.stats(WAIT)?;
    assert_eq!(stats["devices"]["input"], "tone:1000", "{stats}");
    assert_eq!(stats["devices"]["input_opens"], 2, "{stats}");
    assert_eq!(stats["devices"]["output_opens"], 1, "{stats}");
    d.send("quit")?;
    d.wait_exit(WAIT)?;
    let rec = read_wav(&out)?.samples;
    assert_eq!(rec.len(), 48_000, "the test tone's one second");
    let found = dominant_tone(&rec, 48_000, &[440.0, 1000.0]);
    assert_eq!(found.map(|t| t.0), Some(440.0), "{found:?}");
    Ok(())
}
