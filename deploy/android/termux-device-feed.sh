#!/data/data/com.termux/files/usr/bin/sh
# Feeds Tandem's device file source on Android under Termux: every few
# seconds, reads the battery through Termux:API (`termux-battery-status`, from
# the Termux:API app and `pkg install termux-api`) and writes device.json
# atomically (a temporary file renamed over it).
#
#   termux-device-feed.sh [DEVICE_JSON] [INTERVAL_S]     # loop
#   TANDEM_FEED_ONCE=1 termux-device-feed.sh DEVICE_JSON   # one snapshot
#
# The battery temperature stands in for the device's thermal state
# (below 40 °C nominal, 40 fair, 45 serious, 50 critical); Termux cannot read
# Android's thermal status or power-saver mode, which stay unreported.
set -eu
out="${1:-$HOME/.config/tandem/device.json}"
interval="${2:-5}"
while :; do
  if status="$(termux-battery-status 2>/dev/null)"; then
    printf '%s' "$status" | python3 -c '
import json, sys
s = json.load(sys.stdin)
t = s.get("temperature")
snap = {
    "battery": max(0.0, min(1.0, float(s.get("percentage", 100)) / 100.0)),
    "charging": s.get("status") in ("CHARGING", "FULL") or s.get("plugged", "UNPLUGGED") != "UNPLUGGED",
}
if isinstance(t, (int, float)) and -40 <= t <= 200:
    snap["temperature_c"] = float(t)
    snap["thermal"] = "nominal" if t < 40 else "fair" if t < 45 else "serious" if t < 50 else "critical"
json.dump(snap, sys.stdout)
' >"$out.tmp" && mv -f "$out.tmp" "$out"
  fi
  [ "${TANDEM_FEED_ONCE:-0}" = 1 ] && break
  sleep "$interval"
done
