#!/usr/bin/env bash
# subset-icons.sh: cut Google's Material Icons (Apache-2.0, Debian fonts-material-design-icons-iconfont)
# down to the glyphs src/app/theme.rs uses, into assets/fonts/dialtone-icons.ttf (committed; the app
# embeds it). Needs `pip install fonttools` (pyftsubset). Run it after adding an icon to theme.rs.
set -euo pipefail
src=/usr/share/fonts/truetype/material-design-icons-iconfont/MaterialIcons-Regular.ttf
cd "$(dirname "$0")/.."
codes=$(grep -o "\\\\u{e[0-9a-f]\{3\}}" src/app/theme.rs | sed 's/\\u{\(.*\)}/U+\1/' | sort -u | paste -sd, -)
pyftsubset "$src" --unicodes="$codes" --output-file=assets/fonts/dialtone-icons.ttf --no-hinting --desubroutinize
echo "subset-icons: $(echo "$codes" | tr ',' '\n' | wc -l) glyphs → assets/fonts/dialtone-icons.ttf ($(stat -c %s assets/fonts/dialtone-icons.ttf) bytes)"
