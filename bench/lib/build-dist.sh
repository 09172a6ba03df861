# Sourced by the bench scripts: builds dist/ as `npm run build` does (tsc, then the CLI bundle),
# except that type errors elsewhere in the tree do not stop it.
build_dist() {
  test -f build/Release/bunker_fs.node -a -f build/Release/bunker_codec.node || npx --yes node-gyp rebuild >/dev/null
  npx tsc -p tsconfig.build.json >/dev/null 2>&1 || true
  node scripts/bundle.mjs
  test -f dist/cli/main.js -a -f dist/repo/index.js || { echo "dist/ is incomplete: run npm run build to see why" >&2; exit 1; }
}
