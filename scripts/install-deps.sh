#!/usr/bin/env bash
# install-deps.sh: Debian 12 packages to build Dialtone and to run its tests against real SIP peers.
#
# Idempotent: when every package is already installed it does not touch apt at all (and needs no root),
# so running it before every test run costs ~50 ms. Otherwise it runs apt-get as root, through sudo
# when not root. It never installs Rust: it checks that cargo (with rustfmt and clippy) is there and
# says how to get it when it is not.
#
# Usage: scripts/install-deps.sh [--build-only] [--assets]
#   --build-only   only what building needs, not the test peers (scripts/run.sh)
#   --assets       also the tools of scripts/render-assets.sh (rsvg-convert, sox), for changing the
#                  icon or ring tone; their outputs are committed, so nobody else needs them
#   EXTRA_PACKAGES="pkg1 pkg2" adds packages.
set -euo pipefail

build_only=0
assets=0
for arg in "$@"; do
	case $arg in
	--build-only) build_only=1 ;;
	--assets) assets=1 ;;
	-h | --help)
		sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
		exit 0
		;;
	*)
		echo "install-deps: unknown argument $arg (try --help)" >&2
		exit 2
		;;
	esac
done

BUILD_PACKAGES=(build-essential pkg-config cmake nasm libclang-dev libasound2-dev libvpx-dev ca-certificates curl)
# The window (winit + glow load these at run time): OpenGL through Mesa, X11 input/cursor/keyboard.
BUILD_PACKAGES+=(libgl1-mesa-dri libegl1 libglx-mesa0 libxkbcommon-x11-0 libxcursor1 libxrandr2 libxi6 libx11-xcb1)
# Test peers: kamailio (registrar/proxy), sip-tester (sipp, and its g711a.pcap), baresip (UA and its
# modules), sox (audio files), procps (ps/kill), iproute2 (ss, for debugging port use), tshark
# (dumpcap + tshark: the wire capture of benches/sip_latency.rs), pulseaudio + pulseaudio-utils
# (pactl): a private sound server with a null sink for the real-device tests (tests/audio_devices.rs).
# Building needs no PulseAudio library: cpal's pulseaudio host is a pure-Rust client.
# dbus-daemon + gnome-keyring (+ libsecret-tools' secret-tool as an independent client): a private
# session bus with a real Secret Service for the password tests (tests/store_keyring.rs).
# desktop-file-utils (desktop-file-validate, update-desktop-database) checks the desktop entry and
# `dialtone --install-desktop` (tests/desktop_install.rs); dbus-daemon runs the private session bus of
# the notification tests (tests/desktop_notify.rs).
PEER_PACKAGES=(kamailio sip-tester baresip baresip-core sox procps iproute2 tshark pulseaudio pulseaudio-utils
	desktop-file-utils dbus-daemon gnome-keyring libsecret-tools)
# A real window in the tests: a virtual X server (xvfb, xauth), xdotool to find and click windows,
# x11-utils (xwininfo) and imagemagick (import) for screenshots.
PEER_PACKAGES+=(xvfb xauth xdotool x11-utils imagemagick)
[ "$build_only" = 1 ] && PEER_PACKAGES=()
ASSET_PACKAGES=()
[ "$assets" = 1 ] && ASSET_PACKAGES=(librsvg2-bin sox)
# shellcheck disable=SC2206
PACKAGES=("${BUILD_PACKAGES[@]}" "${PEER_PACKAGES[@]}" "${ASSET_PACKAGES[@]}" ${EXTRA_PACKAGES:-})

missing=()
for pkg in "${PACKAGES[@]}"; do
	status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
	[ "$status" = "install ok installed" ] || missing+=("$pkg")
done

if [ ${#missing[@]} -eq 0 ]; then
	echo "install-deps: all ${#PACKAGES[@]} Debian packages already installed"
else
	echo "install-deps: installing ${missing[*]}"
	if [ "$(id -u)" -eq 0 ]; then
		SUDO=()
	elif command -v sudo >/dev/null 2>&1; then
		SUDO=(sudo)
	else
		echo "install-deps: not root and no sudo; as root run: apt-get install ${missing[*]}" >&2
		exit 1
	fi
	"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update
	"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
fi

# Rust: the toolchain is the user's business (rustup), we only check it.
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
	export PATH="$HOME/.cargo/bin:$PATH"
fi
if ! command -v cargo >/dev/null 2>&1; then
	cat >&2 <<'MSG'
install-deps: no Rust toolchain (cargo is not on PATH). Install rustup and the toolchain this crate needs:
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --default-toolchain 1.95 --component rustfmt,clippy
    . "$HOME/.cargo/env"
MSG
	exit 1
fi
for tool in fmt clippy; do
	if ! cargo "$tool" --version >/dev/null 2>&1; then
		echo "install-deps: 'cargo $tool' is missing; install it with: rustup component add ${tool/fmt/rustfmt}" >&2
		exit 1
	fi
done
echo "install-deps: $(cargo --version)"
