# Sourced by the A/B probes (bench/dev/ab_probe.sh, s4_probe.sh): device_env.sh
# (repository root, $OUT, $B = build-dev built from the working tree, $t0),
# then the base tree $BASE (default xp-base/: a `git archive <commit>` copy,
# carried) built the same way into $BASE/build-dev.
source "$(dirname "${BASH_SOURCE[0]}")/../../test/gpu/device_env.sh"
BASE=${BASE:-xp-base}
ln -sfn "$PWD/$CARRY" "$BASE/$CARRY"
(OUT=$OUT/base "$BASE/test/gpu/device_validate.sh" build >/dev/null 2>&1) ||
  { echo "base build failed"; tail -20 "$OUT/base/build.log"; exit 1; }
echo "builds: $((SECONDS - t0)) s"
