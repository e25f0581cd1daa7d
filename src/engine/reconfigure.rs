//! Settings applied to a running engine (`Command::Reconfigure`), on the media side and for what
//! cannot change live; the SIP side (accounts, call options) is the user agent's
//! (`UserAgent::reconfigure`).
//!
//! Devices switch at once, exactly like `SetAudioInput`/`SetAudioOutput` (no call is
//! renegotiated); the ring device is opened, switched or closed; the ring tone and the audio
//! processing apply from the next ring / call. `listen` and `rtp_ports` belong to sockets bound
//! at start: a change is reported as taking effect after a restart, and is not recorded as
//! applied.

use super::media::devices::{InputSpec, OutputSpec};
use super::media::engine::MediaEngine;
use super::media_net::MediaNet;
use super::sip::ua::UserAgent;
use crate::api::{Command, Event};
use crate::store::settings::Settings;
use std::time::Instant;

/// Applies `new` over `current` (the settings in force, updated to what was applied) and returns
/// the errors for the user. Settings that do not validate change nothing.
pub fn apply(
    current: &mut Settings,
    new: Settings,
    media: &mut MediaNet,
    ua: &mut UserAgent,
    now: Instant,
) -> Vec<Event> {
    if let Err(e) = new.validate() {
        return vec![error(format!("settings not applied: {e}"))];
    }
    let mut errors = apply_media(current, &new, &mut media.engine);
    if new.listen != current.listen || new.rtp_ports != current.rtp_ports {
        errors.push(format!(
            "listen {:?} and rtp_ports {:?} take effect after a restart (running on {:?} and {:?})",
            new.listen, new.rtp_ports, current.listen, current.rtp_ports
        ));
    }
    let applied = Settings {
        listen: current.listen.clone(),
        rtp_ports: current.rtp_ports.clone(),
        audio_in: current.audio_in.clone(),
        audio_out: current.audio_out.clone(),
        ..new
    };
    *current = applied.clone();
    ua.handle_command(
        Command::Reconfigure {
            settings: Box::new(applied),
        },
        now,
    );
    errors.into_iter().map(error).collect()
}

/// The ring device and the ring tone of `settings`, at start; errors for the user.
pub fn open_ring(settings: &Settings, engine: &mut MediaEngine) -> Vec<Event> {
    let mut errors = Vec::new();
    ring_device(settings, engine, &mut errors);
    ring_tone(settings, engine, &mut errors);
    errors.into_iter().map(error).collect()
}

/// Devices, ring and audio processing; `current.audio_in`/`audio_out` follow the devices that
/// were switched (a device that fails to open leaves the old one, and its setting, in place).
fn apply_media(current: &mut Settings, new: &Settings, engine: &mut MediaEngine) -> Vec<String> {
    let mut errors = Vec::new();
    if new.audio_in != current.audio_in {
        match InputSpec::parse(&new.audio_in).and_then(|s| engine.switch_input(s)) {
            Ok(()) => current.audio_in = new.audio_in.clone(),
            Err(e) => errors.push(format!("audio input: {e}")),
        }
    }
    if new.audio_out != current.audio_out {
        match OutputSpec::parse(&new.audio_out).and_then(|s| engine.switch_output(s)) {
            Ok(()) => current.audio_out = new.audio_out.clone(),
            Err(e) => errors.push(format!("audio output: {e}")),
        }
    }
    if new.ring_out != current.ring_out || new.audio_out != current.audio_out {
        ring_device(new, engine, &mut errors);
    }
    if new.ring_tone != current.ring_tone {
        ring_tone(new, engine, &mut errors);
    }
    engine.set_audio_processing(new.audio_processing);
    errors
}

fn ring_device(settings: &Settings, engine: &mut MediaEngine, errors: &mut Vec<String>) {
    let result = settings
        .ring_output()
        .map_err(|e| e.to_string())
        .and_then(|spec| engine.set_ring_output(spec).map_err(|e| e.to_string()));
    if let Err(e) = result {
        errors.push(format!(
            "ring device: {e}; incoming calls ring on the call output"
        ));
    }
}

fn ring_tone(settings: &Settings, engine: &mut MediaEngine, errors: &mut Vec<String>) {
    let result = settings
        .ring_tone_file()
        .map_err(|e| e.to_string())
        .and_then(|file| {
            engine
                .set_ring_tone(file.as_deref())
                .map_err(|e| e.to_string())
        });
    if let Err(e) = result {
        errors.push(format!("ring tone: {e}; the built-in ring tone plays"));
    }
}

fn error(message: String) -> Event {
    Event::Error { message }
}
