//! 16-bit PCM WAV: reading a whole file into mono samples (the WAV file source) and streaming
//! mono samples to a file (the recording sink).
//!
//! The reader walks the RIFF chunks itself: `fmt ` and `data` are read, anything else (`LIST`,
//! `fact`, `cue `...) is skipped, odd-sized chunks are padded as RIFF requires. Only 16-bit
//! integer PCM is accepted (format 1, or WAVE_FORMAT_EXTENSIBLE with the PCM sub-format); stereo
//! is averaged to mono; any sample rate is returned as is (resampling is the caller's job).
//! Every malformed input is a [`WavError`], never a panic.
//!
//! The writer puts a header with zero sizes first and fixes both sizes when
//! [`WavWriter::finish`] is called, or best-effort on drop, so a recording cut short by a crash
//! is still a valid file up to the last fix.

use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::Path;

/// Why a WAV file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum WavError {
    #[error("WAV I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("not a RIFF/WAVE file")]
    NotWave,
    #[error("truncated WAV file: {0}")]
    Truncated(&'static str),
    #[error("malformed WAV fmt chunk")]
    BadFmt,
    #[error("no fmt chunk before the data")]
    NoFmt,
    #[error("no data chunk")]
    NoData,
    #[error("unsupported WAV encoding (format tag {0:#06x}); only integer PCM is supported")]
    UnsupportedFormat(u16),
    #[error("unsupported WAV sample size ({0} bits); only 16-bit is supported")]
    UnsupportedBits(u16),
    #[error("unsupported WAV channel count ({0}); only mono and stereo are supported")]
    UnsupportedChannels(u16),
    #[error("WAV recording too long for a RIFF file (4 GiB)")]
    TooLong,
}

/// Decoded audio: mono samples at `rate` Hz.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WavAudio {
    pub rate: u32,
    pub samples: Vec<i16>,
}

const FORMAT_PCM: u16 = 1;
const FORMAT_EXTENSIBLE: u16 = 0xFFFE;

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

struct Format {
    channels: u16,
    rate: u32,
}

fn parse_fmt(body: &[u8]) -> Result<Format, WavError> {
    let tag = u16_at(body, 0).ok_or(WavError::BadFmt)?;
    let channels = u16_at(body, 2).ok_or(WavError::BadFmt)?;
    let rate = u32_at(body, 4).ok_or(WavError::BadFmt)?;
    let bits = u16_at(body, 14).ok_or(WavError::BadFmt)?;
    let tag = if tag == FORMAT_EXTENSIBLE {
        // cbSize(2) validBits(2) channelMask(4), then the sub-format GUID whose first two bytes
        // are the format tag.
        u16_at(body, 24).ok_or(WavError::BadFmt)?
    } else {
        tag
    };
    if tag != FORMAT_PCM {
        return Err(WavError::UnsupportedFormat(tag));
    }
    if bits != 16 {
        return Err(WavError::UnsupportedBits(bits));
    }
    if !(1..=2).contains(&channels) {
        return Err(WavError::UnsupportedChannels(channels));
    }
    if rate == 0 {
        return Err(WavError::BadFmt);
    }
    Ok(Format { channels, rate })
}

/// Parses a whole WAV file held in memory.
pub fn parse_wav(bytes: &[u8]) -> Result<WavAudio, WavError> {
    if bytes.get(0..4) != Some(b"RIFF") || bytes.get(8..12) != Some(b"WAVE") {
        return Err(
            if bytes.len() < 12 && b"RIFF".starts_with(&bytes[..bytes.len().min(4)]) {
                WavError::Truncated("header")
            } else {
                WavError::NotWave
            },
        );
    }
    let mut format = None;
    let mut at = 12usize;
    loop {
        let Some(id) = bytes.get(at..at + 4) else {
            return Err(if at >= bytes.len() {
                WavError::NoData
            } else {
                WavError::Truncated("chunk header")
            });
        };
        let size = u32_at(bytes, at + 4).ok_or(WavError::Truncated("chunk header"))? as usize;
        let body_start = at + 8;
        let body_end = body_start
            .checked_add(size)
            .ok_or(WavError::Truncated("chunk"))?;
        match id {
            b"fmt " => {
                let body = bytes
                    .get(body_start..body_end)
                    .ok_or(WavError::Truncated("fmt chunk"))?;
                format = Some(parse_fmt(body)?);
            }
            b"data" => {
                let f = format.ok_or(WavError::NoFmt)?;
                let body = bytes
                    .get(body_start..body_end)
                    .ok_or(WavError::Truncated("data chunk"))?;
                let frame = 2 * usize::from(f.channels);
                let samples = body
                    .chunks_exact(frame)
                    .map(|fr| {
                        let l = i16::from_le_bytes([fr[0], fr[1]]);
                        if f.channels == 2 {
                            let r = i16::from_le_bytes([fr[2], fr[3]]);
                            ((i32::from(l) + i32::from(r)) / 2) as i16
                        } else {
                            l
                        }
                    })
                    .collect();
                return Ok(WavAudio {
                    rate: f.rate,
                    samples,
                });
            }
            _ => {}
        }
        // Chunks are padded to an even size.
        at = body_end + (size & 1);
    }
}

/// Reads a WAV file (see the module docs for what is accepted).
pub fn read_wav(path: &Path) -> Result<WavAudio, WavError> {
    parse_wav(&std::fs::read(path)?)
}

/// Streams 16-bit mono samples into a WAV file.
pub struct WavWriter {
    file: Option<BufWriter<File>>,
    data_bytes: u64,
}

const HEADER_LEN: u64 = 44;

impl WavWriter {
    /// Creates (or truncates) `path` and writes a header for 16-bit mono at `rate` Hz.
    pub fn create(path: &Path, rate: u32) -> Result<Self, WavError> {
        let mut file = BufWriter::new(File::create(path)?);
        let mut h = Vec::with_capacity(HEADER_LEN as usize);
        h.extend_from_slice(b"RIFF");
        h.extend_from_slice(&36u32.to_le_bytes()); // fixed on finish
        h.extend_from_slice(b"WAVEfmt ");
        h.extend_from_slice(&16u32.to_le_bytes());
        h.extend_from_slice(&FORMAT_PCM.to_le_bytes());
        h.extend_from_slice(&1u16.to_le_bytes()); // channels
        h.extend_from_slice(&rate.to_le_bytes());
        h.extend_from_slice(&(rate.saturating_mul(2)).to_le_bytes()); // byte rate
        h.extend_from_slice(&2u16.to_le_bytes()); // block align
        h.extend_from_slice(&16u16.to_le_bytes()); // bits
        h.extend_from_slice(b"data");
        h.extend_from_slice(&0u32.to_le_bytes()); // fixed on finish
        file.write_all(&h)?;
        Ok(Self {
            file: Some(file),
            data_bytes: 0,
        })
    }

    /// Appends samples.
    pub fn write(&mut self, samples: &[i16]) -> Result<(), WavError> {
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        let added = 2 * samples.len() as u64;
        if HEADER_LEN - 8 + self.data_bytes + added > u64::from(u32::MAX) {
            return Err(WavError::TooLong);
        }
        let mut buf = [0u8; 512];
        for chunk in samples.chunks(buf.len() / 2) {
            for (dst, s) in buf.chunks_exact_mut(2).zip(chunk) {
                dst.copy_from_slice(&s.to_le_bytes());
            }
            file.write_all(&buf[..2 * chunk.len()])?;
        }
        self.data_bytes += added;
        Ok(())
    }

    /// Samples written so far.
    pub fn samples_written(&self) -> u64 {
        self.data_bytes / 2
    }

    fn fix_header(&mut self) -> Result<(), WavError> {
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        // Bounded by the check in `write`.
        let data = self.data_bytes as u32;
        file.flush()?;
        let f = file.get_mut();
        f.seek(SeekFrom::Start(4))?;
        f.write_all(&(36 + data).to_le_bytes())?;
        f.seek(SeekFrom::Start(40))?;
        f.write_all(&data.to_le_bytes())?;
        f.seek(SeekFrom::End(0))?;
        f.flush()?;
        Ok(())
    }

    /// Fixes the header sizes and closes the file.
    pub fn finish(mut self) -> Result<(), WavError> {
        let r = self.fix_header();
        self.file = None;
        r
    }
}

impl Drop for WavWriter {
    fn drop(&mut self) {
        if self.file.is_some()
            && let Err(e) = self.fix_header()
        {
            tracing::warn!("cannot finish the WAV recording: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(id: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut v = id.to_vec();
        v.extend_from_slice(&(body.len() as u32).to_le_bytes());
        v.extend_from_slice(body);
        if body.len() % 2 == 1 {
            v.push(0);
        }
        v
    }

    fn fmt_body(tag: u16, channels: u16, rate: u32, bits: u16) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&tag.to_le_bytes());
        v.extend_from_slice(&channels.to_le_bytes());
        v.extend_from_slice(&rate.to_le_bytes());
        let align = channels * bits / 8;
        v.extend_from_slice(&(rate * u32::from(align)).to_le_bytes());
        v.extend_from_slice(&align.to_le_bytes());
        v.extend_from_slice(&bits.to_le_bytes());
        v
    }

    fn riff(chunks: &[Vec<u8>]) -> Vec<u8> {
        let body: Vec<u8> = chunks.concat();
        let mut v = b"RIFF".to_vec();
        v.extend_from_slice(&(4 + body.len() as u32).to_le_bytes());
        v.extend_from_slice(b"WAVE");
        v.extend_from_slice(&body);
        v
    }

    fn pcm(samples: &[i16]) -> Vec<u8> {
        samples.iter().flat_map(|s| s.to_le_bytes()).collect()
    }

    #[test]
    fn writer_and_reader_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rec.wav");
        let samples: Vec<i16> = (0..1000).map(|i| (i * 37 - 18000) as i16).collect();
        let mut w = WavWriter::create(&path, 16000).unwrap();
        w.write(&samples[..300]).unwrap();
        w.write(&samples[300..]).unwrap();
        assert_eq!(w.samples_written(), 1000);
        w.finish().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len(), 44 + 2000);
        assert_eq!(u32_at(&bytes, 4), Some(36 + 2000));
        assert_eq!(u32_at(&bytes, 40), Some(2000));
        let audio = read_wav(&path).unwrap();
        assert_eq!(audio.rate, 16000);
        assert_eq!(audio.samples, samples);
    }

    #[test]
    fn a_dropped_writer_still_leaves_a_valid_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cut.wav");
        {
            let mut w = WavWriter::create(&path, 8000).unwrap();
            w.write(&[1, 2, 3]).unwrap();
        }
        let audio = read_wav(&path).unwrap();
        assert_eq!(audio.samples, vec![1, 2, 3]);
        // An empty recording is a valid empty file too.
        WavWriter::create(&path, 8000).unwrap().finish().unwrap();
        assert_eq!(read_wav(&path).unwrap().samples, Vec::<i16>::new());
    }

    #[test]
    fn unknown_chunks_like_list_are_skipped_including_odd_padding() {
        let bytes = riff(&[
            chunk(b"fmt ", &fmt_body(1, 1, 8000, 16)),
            chunk(b"LIST", b"INFOISFT\x05\x00\x00\x00test\x00"),
            chunk(b"odd!", b"abc"),
            chunk(b"data", &pcm(&[100, -100, 32767])),
        ]);
        let audio = parse_wav(&bytes).unwrap();
        assert_eq!(
            audio,
            WavAudio {
                rate: 8000,
                samples: vec![100, -100, 32767]
            }
        );
    }

    #[test]
    fn stereo_is_averaged_to_mono() {
        let bytes = riff(&[
            chunk(b"fmt ", &fmt_body(1, 2, 44100, 16)),
            chunk(b"data", &pcm(&[1000, 3000, -32768, -32768, 32767, -32768])),
        ]);
        let audio = parse_wav(&bytes).unwrap();
        assert_eq!(audio.rate, 44100);
        assert_eq!(audio.samples, vec![2000, -32768, 0]);
    }

    #[test]
    fn extensible_pcm_is_accepted_and_float_refused() {
        let mut ext = fmt_body(FORMAT_EXTENSIBLE, 1, 48000, 16);
        ext.extend_from_slice(&22u16.to_le_bytes());
        ext.extend_from_slice(&16u16.to_le_bytes());
        ext.extend_from_slice(&4u32.to_le_bytes());
        ext.extend_from_slice(&[
            1, 0, 0, 0, 0, 0, 0x10, 0, 0x80, 0, 0, 0xAA, 0, 0x38, 0x9B, 0x71,
        ]);
        let bytes = riff(&[chunk(b"fmt ", &ext), chunk(b"data", &pcm(&[7]))]);
        assert_eq!(parse_wav(&bytes).unwrap().samples, vec![7]);
        let float = riff(&[
            chunk(b"fmt ", &fmt_body(3, 1, 48000, 32)),
            chunk(b"data", &[0; 8]),
        ]);
        assert!(matches!(
            parse_wav(&float),
            Err(WavError::UnsupportedFormat(3))
        ));
    }

    #[test]
    fn other_sample_sizes_and_channel_counts_are_clear_errors() {
        let eight = riff(&[
            chunk(b"fmt ", &fmt_body(1, 1, 8000, 8)),
            chunk(b"data", &[0; 4]),
        ]);
        assert!(matches!(
            parse_wav(&eight),
            Err(WavError::UnsupportedBits(8))
        ));
        let six = riff(&[
            chunk(b"fmt ", &fmt_body(1, 6, 8000, 16)),
            chunk(b"data", &[0; 12]),
        ]);
        assert!(matches!(
            parse_wav(&six),
            Err(WavError::UnsupportedChannels(6))
        ));
        let e = parse_wav(&eight).unwrap_err().to_string();
        assert!(e.contains("8 bits"), "{e}");
    }

    #[test]
    fn truncated_files_are_errors() {
        let good = riff(&[
            chunk(b"fmt ", &fmt_body(1, 1, 8000, 16)),
            chunk(b"data", &pcm(&[1, 2, 3, 4])),
        ]);
        assert!(parse_wav(&good).is_ok());
        assert!(matches!(
            parse_wav(&good[..good.len() - 1]),
            Err(WavError::Truncated("data chunk"))
        ));
        assert!(matches!(
            parse_wav(&good[..20]),
            Err(WavError::Truncated("fmt chunk"))
        ));
        assert!(matches!(
            parse_wav(&good[..14]),
            Err(WavError::Truncated("chunk header"))
        ));
        assert!(matches!(
            parse_wav(&good[..6]),
            Err(WavError::Truncated("header"))
        ));
        // Cut in every possible place: an error each time, never a panic.
        for n in 0..good.len() {
            assert!(parse_wav(&good[..n]).is_err(), "{n}");
        }
    }

    #[test]
    fn garbage_and_missing_chunks_are_errors() {
        assert!(matches!(parse_wav(b""), Err(WavError::Truncated(_))));
        assert!(matches!(
            parse_wav(b"hello, this is not a wav file at all"),
            Err(WavError::NotWave)
        ));
        let no_data = riff(&[chunk(b"fmt ", &fmt_body(1, 1, 8000, 16))]);
        assert!(matches!(parse_wav(&no_data), Err(WavError::NoData)));
        let no_fmt = riff(&[chunk(b"data", &pcm(&[1]))]);
        assert!(matches!(parse_wav(&no_fmt), Err(WavError::NoFmt)));
        let short_fmt = riff(&[chunk(b"fmt ", &[1, 0, 1]), chunk(b"data", &[])]);
        assert!(matches!(parse_wav(&short_fmt), Err(WavError::BadFmt)));
        // A chunk claiming 4 GiB.
        let mut huge = riff(&[chunk(b"fmt ", &fmt_body(1, 1, 8000, 16))]);
        huge.extend_from_slice(b"data\xff\xff\xff\xff\x00\x00");
        assert!(matches!(parse_wav(&huge), Err(WavError::Truncated(_))));
        // Pseudo-random bytes behind a valid RIFF/WAVE header.
        let mut x: u32 = 12345;
        for len in 0..300 {
            let mut b = b"RIFF\0\0\0\0WAVE".to_vec();
            for _ in 0..len {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                b.push((x >> 16) as u8);
            }
            let _ = parse_wav(&b);
        }
        assert!(matches!(
            read_wav(Path::new("/nonexistent/dialtone.wav")),
            Err(WavError::Io(_))
        ));
    }
}
