#!/usr/bin/env bash
# render-assets.sh: makes the generated files in assets/ from their sources. Run it after changing
# assets/dialtone.svg or the ring tone below; the outputs are committed, so users and CI never need
# the tools (scripts/install-deps.sh --assets installs them: librsvg2-bin, sox).
#
#   assets/icons/dialtone-<N>.png   the SVG icon rendered at N x N (16 ... 512)
#   assets/ringtone.wav             the ring tone: a soft plucked arpeggio (E major, rising), twice
#                                   per cycle, softened (low-pass, a little reverb), 16 kHz mono
#                                   16-bit, ~4 s; repeatable (sox -R)
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in rsvg-convert sox; do
	command -v "$tool" >/dev/null || {
		echo "render-assets: $tool is missing; run scripts/install-deps.sh --assets" >&2
		exit 1
	}
done

mkdir -p assets/icons
for size in 16 24 32 48 64 128 256 512; do
	rsvg-convert --width "$size" --height "$size" assets/dialtone.svg --output "assets/icons/dialtone-$size.png"
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
rate=16000
# E5, G#5, B5, E6: each a plucked string with a quieter octave above, decaying over 0.7 s,
# started 0.13 s after the one before.
notes=(659.26 830.61 987.77 1318.51)
parts=()
for i in "${!notes[@]}"; do
	f=${notes[$i]}
	delay=$(awk -v i="$i" 'BEGIN { printf "%.2f", i * 0.13 }')
	sox -R -n -r "$rate" -c 1 -b 16 "$tmp/note$i.wav" \
		synth 0.7 pluck "$f" synth 0.7 sine mix "$(awk -v f="$f" 'BEGIN { print f * 2 }')" \
		fade l 0.004 0.7 0.6 gain -8 pad "$delay" 0
	parts+=("$tmp/note$i.wav")
done
sox -R -m "${parts[@]}" "$tmp/phrase.wav" highpass 120 lowpass 3500 reverb 20 50 40 norm -4 pad 0 0.35
# The phrase twice, then a rest, so that looping the file rings in a calm rhythm.
sox -R "$tmp/phrase.wav" "$tmp/phrase.wav" -r "$rate" -c 1 -b 16 assets/ringtone.wav pad 0 0.9
echo "render-assets: $(ls assets/icons | wc -l) icons, ringtone $(soxi -D assets/ringtone.wav) s"
