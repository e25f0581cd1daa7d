//! The files in `assets/`, embedded so that an installed binary is self-contained
//! (`dialtone --install-desktop` writes them out; the app can use the icon and ring tone directly).
//! The PNGs and the WAV are made from their sources by `scripts/render-assets.sh`.

/// The desktop entry template (`Exec=dialtone %u`; the installer puts the real path in).
pub const DESKTOP_ENTRY: &str = include_str!("../../assets/dialtone.desktop");

/// The scalable app icon.
pub const ICON_SVG: &[u8] = include_bytes!("../../assets/dialtone.svg");

/// The app icon rendered at each size (pixels, PNG bytes), smallest first.
pub const ICON_PNGS: &[(u32, &[u8])] = &[
    (16, include_bytes!("../../assets/icons/dialtone-16.png")),
    (24, include_bytes!("../../assets/icons/dialtone-24.png")),
    (32, include_bytes!("../../assets/icons/dialtone-32.png")),
    (48, include_bytes!("../../assets/icons/dialtone-48.png")),
    (64, include_bytes!("../../assets/icons/dialtone-64.png")),
    (128, include_bytes!("../../assets/icons/dialtone-128.png")),
    (256, include_bytes!("../../assets/icons/dialtone-256.png")),
    (512, include_bytes!("../../assets/icons/dialtone-512.png")),
];

/// The ring tone: 16 kHz mono 16-bit PCM WAV, about 4 s, made to be looped.
pub const RINGTONE_WAV: &[u8] = include_bytes!("../../assets/ringtone.wav");

/// The PNG icon closest to `size` pixels and at least that big when there is one (for a window
/// icon, e.g. `egui::IconData` after decoding).
pub fn icon_png(size: u32) -> &'static [u8] {
    ICON_PNGS
        .iter()
        .find(|(s, _)| *s >= size)
        .or(ICON_PNGS.last())
        .map(|(_, bytes)| *bytes)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Width and height from a PNG's IHDR chunk.
    fn png_size(png: &[u8]) -> (u32, u32) {
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "PNG signature");
        assert_eq!(&png[12..16], b"IHDR");
        let w = u32::from_be_bytes(png[16..20].try_into().unwrap());
        let h = u32::from_be_bytes(png[20..24].try_into().unwrap());
        (w, h)
    }

    #[test]
    fn every_embedded_png_has_its_stated_size() {
        for (size, png) in ICON_PNGS {
            assert_eq!(png_size(png), (*size, *size));
        }
        for required in [32, 48, 64, 128, 256, 512] {
            assert!(
                ICON_PNGS.iter().any(|(s, _)| *s == required),
                "{required} px icon"
            );
        }
    }

    #[test]
    fn icon_png_picks_the_next_size_up() {
        assert_eq!(png_size(icon_png(40)), (48, 48));
        assert_eq!(png_size(icon_png(48)), (48, 48));
        assert_eq!(png_size(icon_png(4096)), (512, 512));
    }

    #[test]
    fn ringtone_is_small_16_bit_mono_pcm_of_a_few_seconds() {
        let w = RINGTONE_WAV;
        assert_eq!(&w[..4], b"RIFF");
        assert_eq!(&w[8..16], b"WAVEfmt ");
        let u16_at = |i: usize| u16::from_le_bytes([w[i], w[i + 1]]);
        let u32_at = |i: usize| u32::from_le_bytes(w[i..i + 4].try_into().unwrap());
        assert_eq!(u16_at(20), 1, "PCM");
        assert_eq!(u16_at(22), 1, "mono");
        assert_eq!(u32_at(24), 16_000, "sample rate");
        assert_eq!(u16_at(34), 16, "bits per sample");
        let seconds = (w.len() - 44) as f64 / (16_000.0 * 2.0);
        assert!((2.0..=6.0).contains(&seconds), "{seconds} s");
        assert!(w.len() < 256 * 1024);
    }

    #[test]
    fn svg_and_desktop_entry_are_the_real_files() {
        let svg = std::str::from_utf8(ICON_SVG).unwrap();
        assert!(svg.contains("<svg") && svg.contains("viewBox=\"0 0 512 512\""));
        assert!(DESKTOP_ENTRY.starts_with("[Desktop Entry]\n"));
        assert!(DESKTOP_ENTRY.contains("\nExec=dialtone %u\n"));
        assert!(DESKTOP_ENTRY.contains("\nStartupWMClass=dialtone\n"));
    }
}
