# Shared by scripts/demo and scripts/bench-swap: a loopback rehearsal (exosim with
# loopback VMs behind it, the Elastic IP forwarded, a file store, a project from
# `baton init` adjusted for the loopback VMs). Source it with NET set (e.g. 127.0.77) and,
# optionally, EXOSIM_ARGS and SITE_ARGS (arrays of extra flags for exosim and
# scripts/loopback-site); it sets root, baton, work,
# site, eip, port and a cleanup trap.
root=$(cd "$(dirname "$0")/.." && pwd)
(cd "$root" && cargo build --quiet --bins)
baton="$root/target/debug/baton"
exosim="$root/target/debug/exosim"
if [ "$(id -u)" -ne 0 ]; then
  echo "demo: run as root (sshd, a system user and port 443 on 127.0.77.x)" >&2
  exit 1
fi

work=$(mktemp -d /tmp/baton-demo.XXXXXX)
# sshd reads a VM's authorized_keys as the admin user, who must be able to pass through.
chmod 711 "$work"
net=${NET:?set NET, e.g. 127.0.77}
eip=$net.2
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export LOOPBACK_VM_DIR="$work/vms" LOOPBACK_VM_BATON="$baton" LOOPBACK_VM_NET="$net"
mkdir -p "$LOOPBACK_VM_DIR"
exosim_pid=""
loop_pid=""
cleanup() {
  [ -n "$loop_pid" ] && kill "$loop_pid" 2>/dev/null || true
  [ -n "$exosim_pid" ] && kill "$exosim_pid" 2>/dev/null || true
  for vm in "$LOOPBACK_VM_DIR"/*/; do
    [ -f "$vm/instance.json" ] && "$root/scripts/loopback-vm" delete "$(basename "$vm")" - - || true
  done
  rm -rf "$work"
}
trap cleanup EXIT
step() { printf '\n== %s\n' "$*"; }

# Throw-away credentials for the simulator; nothing leaves this machine.
export EXOSCALE_API_KEY="EXOdemo$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export EXOSCALE_API_SECRET="$(head -c 24 /dev/urandom | base64)"
"$exosim" --listen 127.0.0.1:0 --eip "$eip" --forward 443 --forward "$port" \
  --on-create "$root/scripts/loopback-vm create" --on-delete "$root/scripts/loopback-vm delete" \
  "${EXOSIM_ARGS[@]}" \
  > "$work/exosim.out" 2>"$work/exosim.log" &
exosim_pid=$!
for _ in $(seq 100); do [ -s "$work/exosim.out" ] && break; sleep 0.05; done
endpoint=$(head -1 "$work/exosim.out" | sed 's/^exosim: listening on //')

site="$work/site"
step "baton init (Elastic IP $eip, SSH port $port, cloud: exosim at $endpoint)"
"$root/scripts/loopback-site" "$baton" "$site" "${SITE_ARGS[@]}" -- --address "$eip" \
  --ssh-port "$port" --store "file://$work/store" --cloud-endpoint "$endpoint" 2>&1 \
  | grep -v '^@cert' | sed 's/^/  /'
"$baton" publish -c "$site/baton.toml" | tail -1 | sed 's/^/  /'
"$baton" known-hosts -c "$site/baton.toml" > "$work/known_hosts"
kh_sum=$(sha256sum < "$work/known_hosts")

