//! The real-peer harness (tests/common/peers.rs) works on its own, without Dialtone: Kamailio starts,
//! baresip registers over UDP and TCP, sipp and baresip call through Kamailio. Every test has its own
//! ports, so they run in parallel.

mod common;

use std::time::{Duration, Instant};

use anyhow::Result;
use common::peers::*;

#[test]
fn kamailio_listens_on_udp_and_tcp() -> Result<()> {
    let ports = PortBlock::acquire();
    let started = Instant::now();
    let mut kam = Kamailio::start(ports.port(), ports.port())?;
    eprintln!("kamailio ready in {:?}", started.elapsed());
    assert!(udp_listening(kam.port()) && tcp_listening(kam.port()));
    kam.wait_for(&format!("tcp: 127.0.0.1 [127.0.0.1]:{}", kam.port()), WAIT)?;
    Ok(())
}

#[test]
fn baresip_registers_over_udp_and_tcp() -> Result<()> {
    let ports = PortBlock::acquire();
    let kam = Kamailio::start(ports.port(), ports.port())?;
    let started = Instant::now();
    let mut alice =
        Baresip::start(BaresipConfig::from_ports("alice", &ports).registrar(kam.port()))?;
    eprintln!("alice registered (udp) in {:?}", started.elapsed());
    let started = Instant::now();
    let mut bob = Baresip::start(
        BaresipConfig::from_ports("bob", &ports)
            .registrar(kam.port())
            .transport(Transport::Tcp),
    )?;
    eprintln!("bob registered (tcp) in {:?}", started.elapsed());
    alice.wait_for("{0/UDP/v4} 200 OK", WAIT)?;
    bob.wait_for("{0/TCP/v4} 200 OK", WAIT)?;
    Ok(())
}

#[test]
fn baresip_with_a_wrong_password_fails_to_start() -> Result<()> {
    let ports = PortBlock::acquire();
    let kam = Kamailio::start(ports.port(), ports.port())?;
    let result = Baresip::start(
        BaresipConfig::from_ports("carol", &ports)
            .registrar(kam.port())
            .password("wrong"),
    );
    let error = format!("{:#}", result.err().expect("registration must fail"));
    assert!(error.contains("registration failed"), "{error}");
    assert!(error.contains("401 Unauthorized"), "{error}");
    Ok(())
}

#[test]
fn sipp_calls_baresip_through_kamailio() -> Result<()> {
    let ports = PortBlock::acquire();
    let kam = Kamailio::start(ports.port(), ports.port())?;
    let mut bob = Baresip::start(BaresipConfig::from_ports("bob", &ports).registrar(kam.port()))?;
    let (rtp, _) = ports.rtp_ports(4);
    let call = SippUac::new(ports.sip_port(), rtp)
        .hold(Duration::from_secs(1))
        .run(kam.port(), "bob")?;
    eprintln!("sipp call took {:?}", call.elapsed);
    assert!(call.success(), "{call}");
    bob.wait_for("Call established: sip:sipp@", WAIT)?;
    bob.wait_for(baresip_log::AUDIO_RECEIVED, WAIT)?;
    bob.wait_for(baresip_log::CLOSED_BY_PEER, WAIT)?;
    // the call lasted 1 s
    bob.wait_for(baresip_log::TERMINATED, WAIT)?;
    Ok(())
}

#[test]
fn sipp_calls_the_echo_uas_through_kamailio() -> Result<()> {
    let ports = PortBlock::acquire();
    let kam = Kamailio::start(ports.port(), ports.sip_port())?;
    let (uas_rtp, _) = ports.rtp_ports(4);
    let uas = SippUas::start(kam.echo_port(), uas_rtp)?;
    let (rtp, _) = ports.rtp_ports(4);
    let call = SippUac::new(ports.sip_port(), rtp)
        .hold(Duration::from_secs(1))
        .run(kam.port(), "echo")?;
    assert!(call.success(), "{call}\n----- UAS -----\n{}", uas.errors());
    assert_eq!(uas.errors(), "");
    Ok(())
}

#[test]
fn baresip_calls_baresip_through_kamailio() -> Result<()> {
    let ports = PortBlock::acquire();
    let kam = Kamailio::start(ports.port(), ports.port())?;
    let mut alice =
        Baresip::start(BaresipConfig::from_ports("alice", &ports).registrar(kam.port()))?;
    let mut bob = Baresip::start(
        BaresipConfig::from_ports("bob", &ports)
            .registrar(kam.port())
            .transport(Transport::Tcp),
    )?;
    let started = Instant::now();
    alice.dial(&kam.uri("bob"))?;
    alice.wait_for(baresip_log::CALL_ESTABLISHED, WAIT)?;
    bob.wait_for(baresip_log::CALL_ESTABLISHED, WAIT)?;
    eprintln!("call established in {:?}", started.elapsed());
    // media both ways
    alice.wait_for(baresip_log::AUDIO_RECEIVED, WAIT)?;
    bob.wait_for(baresip_log::AUDIO_RECEIVED, WAIT)?;
    alice.hangup()?;
    alice.wait_for(baresip_log::HUNG_UP, WAIT)?;
    bob.wait_for(baresip_log::CLOSED_BY_PEER, WAIT)?;

    // A second call, bob to alice over TCP to Kamailio: marks tell its events from the first call's.
    let (alice_mark, bob_mark) = (alice.mark(), bob.mark());
    bob.dial(&format!("{};transport=tcp", kam.uri("alice")))?;
    alice.wait_for_after(alice_mark, baresip_log::CALL_ESTABLISHED, WAIT)?;
    bob.wait_for_after(bob_mark, baresip_log::CALL_ESTABLISHED, WAIT)?;
    bob.hangup()?;
    alice.wait_for_after(alice_mark, baresip_log::CLOSED_BY_PEER, WAIT)?;
    Ok(())
}

#[test]
fn baresip_answers_by_hand() -> Result<()> {
    let ports = PortBlock::acquire();
    let kam = Kamailio::start(ports.port(), ports.port())?;
    let mut alice =
        Baresip::start(BaresipConfig::from_ports("alice", &ports).registrar(kam.port()))?;
    let mut carol = Baresip::start(
        BaresipConfig::from_ports("carol", &ports)
            .registrar(kam.port())
            .answer_mode(AnswerMode::Manual),
    )?;
    alice.dial(&kam.uri("carol"))?;
    carol.wait_for(baresip_log::INCOMING_CALL, WAIT)?;
    assert!(!alice.log_contains(baresip_log::CALL_ESTABLISHED));
    carol.accept()?;
    alice.wait_for(baresip_log::CALL_ESTABLISHED, WAIT)?;
    carol.hangup()?;
    alice.wait_for(baresip_log::CLOSED_BY_PEER, WAIT)?;
    Ok(())
}

#[test]
fn port_blocks_do_not_overlap() {
    let a = PortBlock::acquire();
    let b = PortBlock::acquire();
    assert!(a.first().abs_diff(b.first()) >= PORT_BLOCK_SIZE);
    let (first, last) = a.rtp_ports(10);
    assert_eq!(last - first, 9);
    assert_eq!(a.sip_port(), first + 10);
}

#[test]
#[should_panic(expected = "required test peer `dialtone-no-such-peer` not found")]
fn a_missing_peer_fails_the_test() {
    require("dialtone-no-such-peer");
}

#[test]
fn baresip_calls_with_srtp_and_video() -> Result<()> {
    let ports = PortBlock::acquire();
    let kam = Kamailio::start(ports.port(), ports.port())?;
    let config = |user| {
        BaresipConfig::from_ports(user, &ports)
            .registrar(kam.port())
            .media_enc("srtp-mand")
            .video(true)
    };
    let mut alice = Baresip::start(config("alice"))?;
    let mut bob = Baresip::start(config("bob"))?;
    alice.dial(&kam.uri("bob"))?;
    alice.wait_for(baresip_log::CALL_ESTABLISHED, WAIT)?;
    bob.wait_for(baresip_log::AUDIO_RECEIVED, WAIT)?;
    bob.wait_for("incoming rtp for 'video' established", WAIT)?;
    alice.wait_for("incoming rtp for 'video' established", WAIT)?;
    assert!(bob.log_contains("audio: SRTP is Enabled"), "{}", bob.log());
    Ok(())
}

#[test]
fn pcma_has_the_g711_reference_values() {
    // silence, -1, full scale positive and negative
    assert_eq!(pcma(&[0, -1, i16::MAX, i16::MIN]), [0xD5, 0x55, 0xAA, 0x2A]);
}
