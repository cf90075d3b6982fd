# lifeos sync receiver (src: tasks/src/container/receiver.rs). $1: the root ("/").
# POSIX sh only: busybox ash, dash and bash all run it. Few processes per frame: each costs
# about a millisecond here, the frame's whole round trip through the engine a fraction of one.
root=${1%/}
for c in dd tar xargs rm chown; do
  command -v "$c" >/dev/null 2>&1 || { echo "no $c in the container"; exit 127; }
done
dd if=/dev/null bs=1 count=0 iflag=fullblock 2>/dev/null || { echo "its dd has no iflag=fullblock"; exit 127; }
# Exactly $1 bytes of stdin: dd with full blocks never reads past them (head -c and tar do).
# Always the first command of a pipeline (a subshell): its exec ends only that.
take() {
  if [ "$1" -le 1048576 ]; then exec dd bs="$1" count=1 iflag=fullblock 2>/dev/null; fi
  dd bs=65536 count=$(($1 / 65536)) iflag=fullblock 2>/dev/null
  [ $(($1 % 65536)) -eq 0 ] || dd bs=$(($1 % 65536)) count=1 iflag=fullblock 2>/dev/null
}
# Before the tar, as the archive endpoint does: r removes; d and f clear what would stop
# tar from making a directory or a file there (tar would write through a link, or fail).
pre='R=$1; shift; for p; do q="$R${p#?}"; case $p in
  r*) rm -rf -- "$q" || exit 255 ;;
  d*) if [ -L "$q" ] || { [ -e "$q" ] && [ ! -d "$q" ]; }; then rm -f -- "$q" || exit 255; fi ;;
  f*) if [ -d "$q" ] && [ ! -L "$q" ]; then rm -rf -- "$q" || exit 255; fi ;;
esac; done'
# A step that fails may leave part of its section unread: say so and exit (lifeos starts a
# new receiver). Its tools' messages come first; the ack names its frame.
fail() { echo "lifeos-ack $n err $1"; exit 1; }
n=0
echo ready 2
while read -r tag seq np nt nl own; do
  n=$((n + 1))
  [ "$tag" = F ] && [ "$seq" = "$n" ] || { echo "out of step at frame $n: $tag $seq"; exit 2; }
  if [ "$np" != 0 ]; then take "$np" | xargs -0 -r sh -c "$pre" - "$root" 2>&1 || fail clearing; fi
  if [ "$nt" != 0 ]; then take "$nt" | tar -x -C "${root:-/}" --numeric-owner -f - 2>&1 || fail extracting; fi
  # busybox tar leaves links root's; the archive endpoint gives them the header's owner.
  if [ "$nl" != 0 ]; then
    take "$nl" | (cd "${root:-/}" && exec xargs -0 -r chown -h "$own" --) 2>&1 || fail "owning links"
  fi
  echo "lifeos-ack $n ok"
done
