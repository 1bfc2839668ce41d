#!/usr/bin/env bash
# Refresh the map libraries the web pages use, from the npm registry, into tracker/api/static/vendor/.
# Pinned versions: change them here, run `make vendor`, look at the pages, commit the result.
# Nothing is fetched at run time: the tracker serves these files itself (no CDN).
set -euo pipefail
cd "$(dirname "$0")/.."

LEAFLET=1.9.4
GEOMAN=2.20.2
DEST=tracker/api/static/vendor

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "leaflet@$LEAFLET" "@geoman-io/leaflet-geoman-free@$GEOMAN" >/dev/null)

rm -rf "$DEST"
mkdir -p "$DEST/leaflet/images" "$DEST/geoman"

mkdir "$work/leaflet" && tar -xzf "$work/leaflet-$LEAFLET.tgz" -C "$work/leaflet"
src="$work/leaflet/package"
cp "$src/dist/leaflet.js" "$src/dist/leaflet.css" "$src/LICENSE" "$DEST/leaflet/"
cp "$src"/dist/images/*.png "$DEST/leaflet/images/"

mkdir "$work/geoman" && tar -xzf "$work/geoman-io-leaflet-geoman-free-$GEOMAN.tgz" -C "$work/geoman"
src="$work/geoman/package"
cp "$src/dist/leaflet-geoman.js" "$src/dist/leaflet-geoman.css" "$src/LICENSE" "$DEST/geoman/"

cat > "$DEST/VERSIONS" <<VERSIONS
leaflet $LEAFLET (BSD-2-Clause) from https://registry.npmjs.org/leaflet
@geoman-io/leaflet-geoman-free $GEOMAN (MIT) from https://registry.npmjs.org/@geoman-io/leaflet-geoman-free
VERSIONS

# The Seoul districts as the maps' own base layer (no tiles needed): data/seoul simplified to ~20 m.
python3 - <<'PY'
import json
from pathlib import Path

try:
    from shapely.geometry import mapping, shape
except ImportError:  # the venv's python has shapely; the system one may not
    raise SystemExit("run with the venv on PATH (make vendor does) to simplify the districts")

src = json.loads(Path("data/seoul/districts.geojson").read_text(encoding="utf-8"))
features = []
for f in src["features"]:
    geom = shape(f["geometry"]).simplify(0.0002, preserve_topology=True)
    g = mapping(geom)

    def rounded(c):
        return [round(c[0], 5), round(c[1], 5)] if isinstance(c[0], float) else [rounded(x) for x in c]

    g = {"type": g["type"], "coordinates": rounded(json.loads(json.dumps(g["coordinates"])))}
    p = f["properties"]
    features.append(
        {"type": "Feature", "properties": {"ko": p["SIG_KOR_NM"], "en": p["SIG_ENG_NM"]}, "geometry": g}
    )
out = {"type": "FeatureCollection", "source": "data/seoul/districts.geojson (JUSO 2015), simplified", "features": features}
Path("tracker/api/static/seoul-districts.geojson").write_text(
    json.dumps(out, ensure_ascii=False, separators=(",", ":")), encoding="utf-8"
)
PY
ls -la "$DEST"/* tracker/api/static/seoul-districts.geojson
