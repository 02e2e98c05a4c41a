#!/bin/sh
# Ship capture files to Flowsight. Needs only POSIX sh and curl.
#
#   ship.sh -u https://flowsight:6066 -k TOKEN_FILE [-s SENSOR] [-m DONE_DIR | -r] FILE...
#   dumpcap -i eth0 -b filesize:100000 -b files:10 -b printname:stdout -w /var/spool/cap/ring.pcapng \
#     | ship.sh -u http://flowsight:6066 -s tap1 -r      # ships each ring file as dumpcap finishes it
#   ship.sh -u URL -w /var/spool/cap -r                  # ships finished files of a directory, forever
#
# Each file is uploaded with `curl -T` and a block id made from its name, size and checksum (block ids are
# per sensor), so a retried upload is counted once and a new file under a reused ring name counts too. A file
# that vanished before it was shipped is reported and skipped. 5xx, 408, 429 and connection errors are retried with backoff (1 s
# doubling to 60 s, for ever); another 4xx moves the file to DONE_DIR/rejected (or leaves it, without -m).
# Only a 2xx deletes the file (-r) or moves it to DONE_DIR (-m); the default leaves it in place.
#   -w DIR   watch DIR: a file is finished once a newer one exists or it is QUIET seconds old
#   -q SECS  QUIET (default 30)   -t SECS  curl timeout per try (default 600)
#   -k FILE  the sensor's token (default: $FLOWSIGHT_TOKEN); it is handed to curl in a private file,
#            never on a command line.  -s SENSOR: only for a relay token that uploads for several sensors
#            (default: $FLOWSIGHT_SENSOR, else the sensor the token is for)
set -u
url="" sensor="${FLOWSIGHT_SENSOR:-}" done_dir="" remove=0 watch="" quiet=30 timeout=600 token_file=""
while getopts "u:s:m:rw:q:t:k:" opt; do
  case $opt in
    u) url=$OPTARG ;; s) sensor=$OPTARG ;; m) done_dir=$OPTARG ;; r) remove=1 ;;
    w) watch=$OPTARG ;; q) quiet=$OPTARG ;; t) timeout=$OPTARG ;; k) token_file=$OPTARG ;;
    *) sed -n '2,21p' "$0" >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
[ -n "$url" ] || { echo "ship.sh: -u URL is required (e.g. http://localhost:6066)" >&2; exit 2; }
command -v curl >/dev/null 2>&1 || { echo "ship.sh: curl is required" >&2; exit 2; }
[ -z "$done_dir" ] || mkdir -p "$done_dir" || exit 2

say() { echo "ship.sh: $*" >&2; }

# curl reads the headers from a file only this user can read
headers=$(umask 077 && mktemp) || exit 2
trap 'rm -f "$headers"' EXIT
trap 'exit 130' INT TERM
if [ -n "$token_file" ]; then
  token=$(head -n 1 "$token_file") || { echo "ship.sh: cannot read $token_file" >&2; exit 2; }
else
  token=${FLOWSIGHT_TOKEN:-}
fi
{
  echo "Content-Type: application/vnd.tcpdump.pcap"
  [ -z "$token" ] || echo "Authorization: Bearer $token"
  [ -z "$sensor" ] || echo "X-Sensor: $sensor"
} > "$headers"
unset token

block_id() {  # a stable id from the file's name, size and checksum (POSIX cksum), in the server's characters:
  # a ring reuses its names (tcpdump -W), and each new ring.pcap0 must count, while a retry counts once
  sum=$(cksum < "$1") || return 1
  printf '%s-%s-%s' "$(basename "$1" | cut -c1-100)" "${sum##* }" "${sum%% *}" | tr -c 'A-Za-z0-9._:-' '_'
}

ship() {  # ship FILE: returns 0 once the server took it (or rejected it for good)
  f=$1 delay=1
  if [ ! -f "$f" ]; then  # a dumpcap ring that overtook the shipper: say so, and go on with the next file
    say "$f: no such file (removed before it was shipped); skipped"
    return 1
  fi
  id=$(block_id "$f") || { say "$f: cannot read it; skipped"; return 1; }
  while :; do
    code=$(curl -sS -o /dev/null -w '%{http_code}' --max-time "$timeout" -T "$f" \
      -H @"$headers" -H "X-Block-Id: $id" \
      "$url/v1/captures" 2>/dev/null) || code=000
    case $code in
      2??)
        say "$f: $code"
        if [ "$remove" = 1 ]; then rm -f "$f"; elif [ -n "$done_dir" ]; then mv "$f" "$done_dir/"; fi
        return 0 ;;
      000|5??|408|429)
        say "$f: answer $code, retrying in ${delay}s"
        sleep "$delay"
        delay=$((delay * 2)); [ "$delay" -gt 60 ] && delay=60 ;;
      *)
        say "$f: rejected with $code; not retried"
        if [ -n "$done_dir" ]; then mkdir -p "$done_dir/rejected" && mv "$f" "$done_dir/rejected/"; fi
        return 1 ;;
    esac
  done
}

status=0
if [ $# -gt 0 ]; then
  for f in "$@"; do ship "$f" || status=1; done
elif [ -n "$watch" ]; then
  while :; do
    newest=$(ls -t "$watch" 2>/dev/null | head -n 1)
    for name in $(ls -tr "$watch" 2>/dev/null); do
      f="$watch/$name"
      [ -f "$f" ] || continue
      if [ "$name" = "$newest" ] && [ -n "$(find "$f" -newermt "-$quiet seconds" 2>/dev/null)" ]; then
        continue  # dumpcap may still be writing it
      fi
      ship "$f" || true
      [ -f "$f" ] && [ "$remove" = 0 ] && [ -z "$done_dir" ] && { say "-w needs -r or -m, or files ship again"; exit 2; }
    done
    sleep 2
  done
else
  while IFS= read -r f; do [ -n "$f" ] && { ship "$f" || status=1; }; done
fi
exit $status
