# Sourced by the bench scripts: builds dist/ as `npm run build` does (tsc, then the bundles the
# benches import, dist/lib/index.js), except that type errors elsewhere in the tree do not stop it.
build_dist() {
  test -f build/Release/bunker_fs.node -a -f build/Release/bunker_codec.node || npx --yes node-gyp rebuild >/dev/null
  npx tsc -p tsconfig.build.json >/dev/null 2>&1 || true
  node scripts/bundle.mjs
  test -f dist/lib/index.js -a -f dist/cli/main.js || { echo "dist/ is incomplete: run npm run build to see why" >&2; exit 1; }
}
