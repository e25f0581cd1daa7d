//! The loopback set-up of the SIP benches (sip_latency, media): one Kamailio (registrar + proxy)
//! whose `echo` user is a sipp echo UAS, ports for a sipp UAC, and Dialtone and baresip set up to
//! register at it, all on 127.0.0.1 in one block of ports.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, SystemTime};

use anyhow::{Result, anyhow, bail};

use super::report::{Stats, stats};
use super::ua::{Kind, Ua, UaSetup};
use crate::fixtures::peers::{HOST, Kamailio, PortBlock, SippUac, SippUas, find_program};

/// `BENCH_RUNS`: how many measured runs per UA (default 10).
pub fn runs_from_env() -> Result<usize> {
    match std::env::var("BENCH_RUNS") {
        Ok(v) => v
            .parse()
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| anyhow!("BENCH_RUNS={v:?}: expected a positive whole number")),
        Err(_) => Ok(10),
    }
}

/// The `dialtone` to measure: the release build cargo made for the bench `bench`, or
/// `BENCH_DIALTONE=PATH` (another build, or a wrapper script running it under strace/perf).
pub fn dialtone_program(bench: &str) -> Result<PathBuf> {
    let program = std::env::var_os("BENCH_DIALTONE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_dialtone")));
    if !program.exists() {
        bail!(
            "{} not found: run the bench with `cargo bench --bench {bench}`, which builds it",
            program.display()
        );
    }
    Ok(program)
}

/// baresip on the PATH.
pub fn baresip_program() -> Result<PathBuf> {
    find_program("baresip")
        .ok_or_else(|| anyhow!("baresip not found: install it with scripts/install-deps.sh"))
}

/// Kamailio and the sipp echo running, the two UAs set up (not started); dropping it stops the
/// peers and frees the ports.
pub struct Testbed {
    /// Dialtone (`carol`) and baresip (`bob`), in that order.
    pub setups: [UaSetup; 2],
    /// `sip:echo@…` through Kamailio: the sipp echo UAS (it echoes RTP).
    pub echo_uri: String,
    _echo: SippUas,
    pub kam: Kamailio,
    uac_port: u16,
    uac_rtp: u16,
    /// The rest of the block, for what a bench starts itself.
    pub ports: PortBlock,
}

impl Testbed {
    /// `dialtone_codecs`: see [`UaSetup::dialtone`].
    pub fn start(
        dialtone: PathBuf,
        baresip: PathBuf,
        dialtone_codecs: Option<&str>,
    ) -> Result<Testbed> {
        let ports = PortBlock::try_acquire()?;
        let kam_port = ports.port();
        let echo_port = ports.sip_port();
        let kam = Kamailio::start(kam_port, echo_port)?;
        let echo = SippUas::start(echo_port, ports.rtp_ports(4).0)?;
        let (uac_port, uac_rtp) = (ports.sip_port(), ports.rtp_ports(4).0);
        let setups = [
            UaSetup::dialtone(
                dialtone,
                "carol",
                ports.sip_port(),
                ports.rtp_ports(10),
                kam.port(),
                dialtone_codecs,
            ),
            UaSetup::baresip(
                baresip,
                "bob",
                ports.sip_port(),
                ports.rtp_ports(10),
                kam.port(),
            )?,
        ];
        Ok(Testbed {
            setups,
            echo_uri: format!("sip:echo@{HOST}:{}", kam.port()),
            _echo: echo,
            kam,
            uac_port,
            uac_rtp,
            ports,
        })
    }

    /// Starts each UA and waits until it has registered; in the order of [`Testbed::setups`].
    pub fn start_uas(&self) -> Result<Vec<Ua>> {
        let mut uas = Vec::new();
        for setup in &self.setups {
            let (mut ua, _) = setup.spawn()?;
            ua.wait_registered()?;
            uas.push(ua);
        }
        Ok(uas)
    }

    /// A sipp UAC (sending no media) calls the user of `setups[i]` through Kamailio and hangs up
    /// after 100 ms; `ua`, started from that setup, answers on its own. Returns once `ua` has seen
    /// the end.
    pub fn incoming_call(&self, i: usize, ua: &mut Ua) -> Result<()> {
        let setup = &self.setups[i];
        let call = SippUac::new(self.uac_port, self.uac_rtp)
            .without_media()
            .hold(Duration::from_millis(100))
            .run(self.kam.port(), setup.user)?;
        if !call.success() {
            bail!("sipp could not call {}:\n{call}", setup.kind.name());
        }
        ua.wait_established()?;
        ua.wait_ended(true)?;
        Ok(())
    }
}

/// One thing one UA did: from setting it off until a pause after it was over.
#[derive(Clone, Copy, Debug)]
pub struct Span {
    /// Index into [`Testbed::setups`].
    pub ua: usize,
    pub from: SystemTime,
    pub to: SystemTime,
}

/// `runs` + 1 rounds of `act` on each UA of `uas` (indexed like [`Testbed::setups`]), which one
/// goes first alternating ([`order`]); each act is followed by a pause of `settle` (so that its
/// BYE transactions are over) before its span ends. Round 0 is a warm-up: not returned.
pub fn rounds(
    runs: usize,
    settle: Duration,
    uas: &mut [Ua],
    mut act: impl FnMut(usize, &mut Ua) -> Result<()>,
) -> Result<Vec<Span>> {
    let mut spans = Vec::new();
    for run in 0..=runs {
        for i in order(run) {
            let from = SystemTime::now();
            act(i, &mut uas[i])?;
            thread::sleep(settle);
            if run > 0 {
                spans.push(Span {
                    ua: i,
                    from,
                    to: SystemTime::now(),
                });
            }
        }
    }
    Ok(spans)
}

/// Which UA goes first (an index into [`Testbed::setups`]) alternates from run to run.
pub fn order(run: usize) -> [usize; 2] {
    if run.is_multiple_of(2) {
        [0, 1]
    } else {
        [1, 0]
    }
}

/// The measurements of a run: per figure and UA, in ms.
pub type Samples = BTreeMap<(&'static str, Kind), Vec<f64>>;

/// Dialtone's and baresip's [`stats`] of `figure`.
pub fn figure_stats(samples: &Samples, figure: &'static str) -> (Option<Stats>, Option<Stats>) {
    let of = |kind| stats(samples.get(&(figure, kind)).map_or(&[][..], |v| v));
    (of(Kind::Dialtone), of(Kind::Baresip))
}
