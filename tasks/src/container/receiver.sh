# lifeos sync receiver (src: tasks/src/container/receiver.rs). $1: the root ("/").
# POSIX sh only: busybox ash, dash and bash all run it.
root=${1%/}
for c in dd tar cat xargs rm chown tr; do
  command -v "$c" >/dev/null 2>&1 || { echo "no $c in the container"; exit 127; }
done
dd if=/dev/null bs=1 count=0 iflag=fullblock 2>/dev/null || { echo "its dd has no iflag=fullblock"; exit 127; }
# Exactly $1 bytes of stdin: dd with full blocks never reads past them (head -c and tar do).
take() {
  [ "$1" -lt 65536 ] || dd bs=65536 count=$(($1 / 65536)) iflag=fullblock 2>/dev/null
  [ $(($1 % 65536)) -eq 0 ] || dd bs=$(($1 % 65536)) count=1 iflag=fullblock 2>/dev/null
}
# A step that fails early still reads its whole section: the next frame starts in step.
drain() { "$@"; r=$?; cat >/dev/null; return $r; }
# Before the tar, as the archive endpoint does: r removes; d and f clear what would stop
# tar from making a directory or a file there (tar would write through a link, or fail).
pre='R=$1; shift; for p; do q="$R${p#?}"; case $p in
  r*) rm -rf -- "$q" || exit 255 ;;
  d*) if [ -L "$q" ] || { [ -e "$q" ] && [ ! -d "$q" ]; }; then rm -f -- "$q" || exit 255; fi ;;
  f*) if [ -d "$q" ] && [ ! -L "$q" ]; then rm -rf -- "$q" || exit 255; fi ;;
esac; done'
echo ready 1
while read -r tag np nt nl own; do
  [ "$tag" = F ] || { echo "out of step: $tag"; exit 2; }
  r=0; e=; s=
  if [ "$np" != 0 ]; then
    s=clearing; e=$(take "$np" | drain xargs -0 -r sh -c "$pre" - "$root" 2>&1); r=$?
  fi
  if [ "$nt" != 0 ]; then
    if [ $r = 0 ]; then
      s=extracting; e=$(take "$nt" | drain tar -x -C "${root:-/}" --numeric-owner -f - 2>&1); r=$?
    else take "$nt" >/dev/null; fi
  fi
  # busybox tar leaves links root's; the archive endpoint gives them the header's owner.
  if [ "$nl" != 0 ]; then
    if [ $r = 0 ]; then
      s="owning links"; e=$(take "$nl" | drain sh -c 'cd "$0" && xargs -0 -r chown -h "$1" --' "${root:-/}" "$own" 2>&1); r=$?
    else take "$nl" >/dev/null; fi
  fi
  if [ $r = 0 ]; then echo ok; else printf 'err %s: %s\n' "$s" "$(printf %s "$e" | tr '\n' ' ')"; fi
done
