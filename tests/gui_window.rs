//! One real window under Xvfb: the app registers a test account at Kamailio, a second Dialtone
//! (headless) calls it, the incoming popup appears, xdotool clicks its green Accept button, the
//! call window opens with audio flowing, a screenshot is taken, and the red Hang-up button ends it.
//!
//! Screenshots land in `target/gui-shots/`; with `DIALTONE_UPDATE_SCREENSHOTS=1` they also replace
//! the README's `docs/screenshots/*.png`.

mod common;

use anyhow::{Context, Result};
use common::dialtone::{Dialtone, call_state, registration};
use common::gui::{Gui, Xvfb};
use common::peers::{Kamailio, PortBlock, WAIT};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The app's contacts and a little history, as a user would have them (and for the screenshot).
fn address_book(home: &std::path::Path) -> Result<()> {
    use dialtone::store::{Contact, Database, Direction, HistoryEntry, Outcome};
    let dir = home.join("data/dialtone");
    std::fs::create_dir_all(&dir)?;
    let mut db = Database::open(&dir.join("dialtone.db"))?.db;
    let contact = |name: &str, favourite, numbers: &[(&str, &str)]| Contact {
        favourite,
        ..Contact::new(name, numbers)
    };
    for c in [
        contact("Bob Builder", true, &[("", "sip:bob@127.0.0.1")]),
        contact(
            "Carol Jones",
            false,
            &[("mobile", "+1 555 0100"), ("desk", "sip:carol@127.0.0.1")],
        ),
        contact("Dave Miller", false, &[("", "sip:dave@example.com")]),
        contact("Erin Walsh", false, &[("work", "+44 20 7946 0958")]),
    ] {
        db.save_contact(&c)?;
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    db.add_call(&HistoryEntry {
        id: None,
        peer: "sip:carol@127.0.0.1".into(),
        name: "Carol Jones".into(),
        direction: Direction::Incoming,
        outcome: Outcome::Missed,
        account: None,
        started_at: now - 3_600_000,
        duration_s: 0.0,
        seen: false,
    })?;
    Ok(())
}

const GREEN: [u8; 3] = [0x22, 0xa5, 0x5a];
const RED: [u8; 3] = [0xe0, 0x3e, 0x3e];

fn shots_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = target.join("gui-shots");
    std::fs::create_dir_all(&dir).expect("creating the screenshot dir");
    dir
}

fn keep_screenshot(from: &std::path::Path, name: &str) {
    if std::env::var_os("DIALTONE_UPDATE_SCREENSHOTS").is_some() {
        let docs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/screenshots");
        std::fs::create_dir_all(&docs).expect("creating docs/screenshots");
        std::fs::copy(from, docs.join(name)).expect("copying the screenshot");
    }
}

#[test]
fn incoming_call_popup_accepted_with_a_click_opens_the_call_window() -> Result<()> {
    let ports = PortBlock::acquire();
    let kam = Kamailio::start(ports.port(), ports.port())?;
    let x = Xvfb::start()?;
    let app_port = ports.sip_port();
    let (rtp_lo, rtp_hi) = ports.rtp_ports(10);
    let mut app = Gui::start_with(
        &x,
        &[
            "--account",
            &kam.uri("alice"),
            "--password",
            "alicepw",
            "--listen",
            &format!("127.0.0.1:{app_port}"),
            "--rtp-ports",
            &format!("{rtp_lo}-{rtp_hi}"),
            "--audio-in",
            "tone:440",
            "--audio-out",
            "null",
        ],
        address_book,
    )?;
    let (main, _) = x
        .wait_window(app.pid(), "^Dialtone$", Duration::from_secs(20))
        .context(app.log())?;
    let shots = shots_dir();
    x.screenshot(Some(main), &shots.join("main.png"))?;

    let bob_port = ports.sip_port();
    let (b_lo, b_hi) = ports.rtp_ports(10);
    let mut bob = Dialtone::start(
        "bob",
        [
            "--account",
            &kam.uri("bob"),
            "--password",
            "bobpw",
            "--listen",
            &format!("127.0.0.1:{bob_port}"),
            "--rtp-ports",
            &format!("{b_lo}-{b_hi}"),
            "--display-name",
            "Bob B",
        ],
    )?;
    bob.wait_event(registration("registered"), WAIT)?;
    bob.call_until_ringing(&kam.uri("alice"), WAIT)?;

    // The popup names the caller from the contacts (the contact's name, not SIP's display name).
    let (popup, _) = x
        .wait_window(app.pid(), "^Incoming call from Bob Builder", WAIT)
        .with_context(|| app.log())?;
    // The popup names the caller; its Accept button is the green one.
    x.wait_color(popup, GREEN, &shots.join("popup.png"), WAIT)?;
    x.click_color(popup, GREEN, &shots.join("popup-click.png"))?;
    bob.wait_event(call_state("established"), WAIT)
        .with_context(|| app.log())?;

    let (call_window, _) = x
        .wait_window(app.pid(), "^Bob Builder .*Dialtone$", WAIT)
        .with_context(|| app.log())?;
    assert!(
        !x.has_window(app.pid(), "^Incoming call from"),
        "the popup closes once the call is accepted"
    );
    // Audio flows both ways through the call the click answered.
    std::thread::sleep(Duration::from_secs(1));
    let stats = bob.stats(WAIT)?;
    let received = stats["calls"][0]["media"]["packets_received"]
        .as_u64()
        .unwrap_or(0);
    assert!(received > 10, "bob hears the app: {stats}");

    let shot = shots.join("call.png");
    let img = x.screenshot(Some(call_window), &shot)?;
    assert!(
        img.count(RED, 12) > 200,
        "the call window shows its red Hang-up button"
    );
    keep_screenshot(&shot, "call.png");
    keep_screenshot(&shots.join("main.png"), "main.png");

    x.click_color(call_window, RED, &shots.join("call-click.png"))?;
    bob.wait_event(call_state("ended"), WAIT)
        .with_context(|| app.log())?;
    assert!(
        app.exited().is_none(),
        "the app keeps running after the call"
    );
    Ok(())
}

#[test]
fn a_second_dialtone_hands_its_sip_link_to_the_running_app_which_dials_it() -> Result<()> {
    let ports = PortBlock::acquire();
    let x = Xvfb::start()?;
    let bob_port = ports.sip_port();
    let (b_lo, b_hi) = ports.rtp_ports(10);
    let mut bob = Dialtone::start(
        "bob",
        [
            "--listen",
            &format!("127.0.0.1:{bob_port}"),
            "--rtp-ports",
            &format!("{b_lo}-{b_hi}"),
            "--auto-answer",
        ],
    )?;
    let (rtp_lo, rtp_hi) = ports.rtp_ports(10);
    let mut app = Gui::start(
        &x,
        &[
            "--listen",
            &format!("127.0.0.1:{}", ports.sip_port()),
            "--rtp-ports",
            &format!("{rtp_lo}-{rtp_hi}"),
            "--audio-in",
            "tone:440",
            "--audio-out",
            "null",
        ],
    )?;
    x.wait_window(app.pid(), "^Dialtone$", Duration::from_secs(20))
        .with_context(|| app.log())?;
    let link = format!("sip:bob@127.0.0.1:{bob_port}");
    let started = Instant::now();
    let (status, stderr) = app.run_second(&[&link])?;
    assert!(status.success(), "the second dialtone exits 0: {stderr}");
    assert!(
        stderr.contains("handed over"),
        "the second dialtone says it handed the link over: {stderr}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the hand-over is quick"
    );
    let incoming = bob
        .wait_event(common::dialtone::is_event("incoming"), WAIT)
        .with_context(|| app.log())?;
    assert!(
        incoming["from"]
            .as_str()
            .unwrap_or_default()
            .contains("sip:"),
        "{incoming}"
    );
    // The running app opened a window for the call it placed.
    x.wait_window(app.pid(), "^bob .*Dialtone$", WAIT)
        .with_context(|| app.log())?;
    // A link that is not a sip:/tel: link is refused by the second process itself.
    let (status, _) = app.run_second(&["http://example.com"])?;
    assert_eq!(status.code(), Some(2));
    // A session logout (SIGTERM) with the call up: the app hangs up (BYE) and exits by itself,
    // without waiting for the "quit and hang up?" question a window close would ask.
    bob.wait_event(call_state("established"), WAIT)
        .with_context(|| app.log())?;
    // (Generous: a loaded CI machine runs the debug build; the app itself takes ~20 ms.)
    let status = app.terminate(Duration::from_secs(10));
    let status = status.with_context(|| app.log())?;
    assert!(status.success(), "clean exit on SIGTERM: {status}");
    let ended = bob
        .wait_event(call_state("ended"), WAIT)
        .with_context(|| app.log())?;
    assert_eq!(ended["reason"], "remote_hangup", "{ended}");
    Ok(())
}
