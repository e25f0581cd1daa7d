//! The `dialtone` command: the desktop app by default, `--headless` for the engine alone.

use clap::Parser;
use dialtone::headless::{self, HeadlessOptions};
use dialtone::store::settings::{Account, MediaEncryption, Settings, Transport};
use std::path::PathBuf;
use std::time::Duration;

/// Dialtone: a SIP softphone.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// A sip:, sips: or tel: URI to dial at start.
    uri: Option<String>,
    /// Run the engine without a window: JSON events on stdout, commands on stdin.
    #[arg(long)]
    headless: bool,
    /// Settings file (default: $XDG_CONFIG_HOME/dialtone/settings.toml).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Use this one account instead of the saved ones, e.g. sip:carol@127.0.0.1:5060.
    #[arg(long, value_name = "URI")]
    account: Option<String>,
    /// Password of --account.
    #[arg(long, requires = "account")]
    password: Option<String>,
    /// Digest user name of --account, if not the URI's user.
    #[arg(long, requires = "account")]
    auth_user: Option<String>,
    /// Registrar / proxy of --account (host[:port] or URI); default: the URI's host.
    #[arg(long, requires = "account")]
    registrar: Option<String>,
    /// SIP transport of --account: udp, tcp or tls.
    #[arg(long, requires = "account", value_parser = parse_transport)]
    transport: Option<Transport>,
    /// Do not register --account (calls only).
    #[arg(long, requires = "account")]
    no_register: bool,
    /// SRTP (SDES) on calls: none, sdes or sdes-mandatory. With --account it is that account's
    /// setting; without, the setting for calls that belong to no account.
    #[arg(long, value_name = "MODE", value_parser = parse_srtp)]
    srtp: Option<MediaEncryption>,
    /// Display name of --account.
    #[arg(long, requires = "account")]
    display_name: Option<String>,
    /// Local SIP address (UDP and TCP), e.g. 127.0.0.1:5065.
    #[arg(long, value_name = "IP:PORT")]
    listen: Option<String>,
    /// RTP port range, e.g. 20200-20299.
    #[arg(long, value_name = "FIRST-LAST")]
    rtp_ports: Option<String>,
    /// Microphone: default, device:NAME, tone:HZ, wav:FILE or silence.
    #[arg(long, value_name = "SOURCE")]
    audio_in: Option<String>,
    /// Speaker: default, device:NAME, wav:FILE or null.
    #[arg(long, value_name = "SINK")]
    audio_out: Option<String>,
    /// Audio codecs in order of preference, comma-separated (default: opus,PCMU,PCMA).
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    codecs: Option<Vec<String>>,
    /// No echo cancellation, noise suppression or automatic gain control on the microphone.
    #[arg(long)]
    no_audio_processing: bool,
    /// Print the audio devices (`in:`/`out:` lines, usable as device:NAME) and exit.
    #[arg(long)]
    list_devices: bool,
    /// Answer every incoming call at once.
    #[arg(long)]
    auto_answer: bool,
    /// Do not disturb: refuse every incoming call at once (486 Busy Here), without ringing.
    #[arg(long)]
    dnd: bool,
    /// Where incoming calls ring: default, device:NAME, wav:FILE or null (default: the speaker).
    #[arg(long, value_name = "SINK")]
    ring_out: Option<String>,
    /// The ring tone: wav:FILE, looped while a call rings (default: the built-in one).
    #[arg(long, value_name = "wav:FILE")]
    ring_tone: Option<String>,
    /// Start the built-in echo service and call it: hear your own microphone (with --headless).
    #[arg(long)]
    echo_test: bool,
    /// Dial this URI at start (same as the positional URI).
    #[arg(long, value_name = "URI")]
    call: Option<String>,
    /// Print `levels` events (input and per-call output level, 10 per second during calls).
    #[arg(long)]
    levels: bool,
    /// Quit (hanging up and un-registering) after this many seconds.
    #[arg(long, value_name = "SECONDS")]
    duration: Option<f64>,
    /// Put Dialtone in the application menu and make it the handler of sip:, sips: and tel:
    /// links (desktop entry, icons, ring tone in the XDG dirs), then exit.
    #[arg(long, conflicts_with = "uninstall_desktop")]
    install_desktop: bool,
    /// Remove what --install-desktop added, then exit.
    #[arg(long)]
    uninstall_desktop: bool,
}

fn parse_transport(s: &str) -> Result<Transport, String> {
    Transport::parse(s).ok_or_else(|| format!("unknown transport {s:?} (udp, tcp, tls)"))
}

fn parse_srtp(s: &str) -> Result<MediaEncryption, String> {
    MediaEncryption::parse(s)
        .ok_or_else(|| format!("unknown SRTP mode {s:?} (none, sdes, sdes-mandatory)"))
}

/// Where the settings come from: `--config FILE`, else the user's settings file.
fn settings_path(cli: &Cli) -> Result<PathBuf, String> {
    match &cli.config {
        Some(p) => Ok(p.clone()),
        None => {
            Settings::default_path().ok_or_else(|| "cannot find the user's config directory".into())
        }
    }
}

/// The headless engine's settings: the file must be valid (a script should not run on defaults).
fn settings_from(cli: &Cli) -> Result<Settings, String> {
    let settings = if cli.account.is_some() {
        Settings::default()
    } else {
        Settings::load(&settings_path(cli)?).map_err(|e| e.to_string())?
    };
    with_cli_options(cli, settings)
}

/// The window's settings: a broken file is kept aside and the app starts on defaults, saying so.
/// With `--account` the settings are the command line's, for this session only (not saved).
fn gui_settings_from(cli: &Cli) -> Result<dialtone::app::launch::GuiSettings, String> {
    if cli.account.is_some() {
        return Ok(dialtone::app::launch::GuiSettings {
            settings: with_cli_options(cli, Settings::default())?,
            path: None,
            notice: None,
        });
    }
    let path = settings_path(cli)?;
    let (settings, notice) = Settings::load_or_recover(&path);
    Ok(dialtone::app::launch::GuiSettings {
        settings: with_cli_options(cli, settings)?,
        path: Some(path),
        notice,
    })
}

fn with_cli_options(cli: &Cli, mut settings: Settings) -> Result<Settings, String> {
    if let Some(uri) = &cli.account {
        settings.accounts = vec![Account {
            uri: uri.clone(),
            password: cli.password.clone().unwrap_or_default(),
            auth_user: cli.auth_user.clone().unwrap_or_default(),
            registrar: cli.registrar.clone().unwrap_or_default(),
            transport: cli.transport.unwrap_or_default(),
            register: !cli.no_register,
            display_name: cli.display_name.clone().unwrap_or_default(),
            media_encryption: cli.srtp.unwrap_or_default(),
            ..Account::default()
        }];
    } else if let Some(m) = cli.srtp {
        settings.media_encryption = m;
    }
    if let Some(l) = &cli.listen {
        settings.listen = l.clone();
    }
    if let Some(r) = &cli.rtp_ports {
        settings.rtp_ports = r.clone();
    }
    settings.auto_answer |= cli.auto_answer;
    settings.do_not_disturb |= cli.dnd;
    if let Some(r) = &cli.ring_out {
        settings.ring_out = r.clone();
    }
    if let Some(r) = &cli.ring_tone {
        settings.ring_tone = r.clone();
    }
    if cli.no_audio_processing {
        settings.audio_processing = false;
    }
    if let Some(c) = &cli.codecs {
        settings.codecs = c.iter().map(|s| s.trim().to_string()).collect();
    }
    if let Some(a) = &cli.audio_in {
        settings.audio_in = a.clone();
    }
    if let Some(a) = &cli.audio_out {
        settings.audio_out = a.clone();
    }
    settings.validate().map_err(|e| e.to_string())?;
    Ok(settings)
}

fn main() {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                // The PulseAudio client logs each connection at info: the device watcher's look
                // every 2 s would fill the log all day.
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,pulseaudio=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    if cli.install_desktop || cli.uninstall_desktop {
        std::process::exit(dialtone::desktop::install::run_cli(cli.uninstall_desktop));
    }
    if cli.list_devices {
        let (inputs, outputs) = dialtone::engine::media::devices::list_devices();
        for d in inputs {
            println!("in: {d}");
        }
        for d in outputs {
            println!("out: {d}");
        }
        return;
    }
    if !cli.headless {
        let settings = match gui_settings_from(&cli) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("dialtone: {e}");
                std::process::exit(2);
            }
        };
        let opts = dialtone::app::launch::LaunchOptions {
            link: cli.uri.clone(),
            call: cli.call.clone(),
        };
        std::process::exit(dialtone::app::launch::run(settings, opts));
    }
    let settings = match settings_from(&cli) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("dialtone: {e}");
            std::process::exit(2);
        }
    };
    let duration = match cli.duration {
        Some(s) if s.is_finite() && s >= 0.0 => Some(Duration::from_secs_f64(s)),
        Some(s) => {
            eprintln!("dialtone: bad --duration {s}");
            std::process::exit(2);
        }
        None => None,
    };
    let code = headless::run(
        settings,
        HeadlessOptions {
            call: cli.call.clone().or(cli.uri.clone()),
            levels: cli.levels,
            duration,
            echo_test: cli.echo_test,
        },
    );
    std::process::exit(code);
}
