#!/usr/bin/env bash
# Writes aforo-implementation.yaml: the Flex Gateway extension carrying aforo_metering.wasm
# (base64, as Local Mode takes it). Usage: ./render-implementation.sh path/to/aforo_metering.wasm
# Portable: base64 reads stdin and newlines are stripped, because GNU base64 wraps lines (and
# its -w0 does not exist in macOS's base64).
set -euo pipefail
wasm="${1:?usage: $0 path/to/aforo_metering.wasm}"
[ -f "$wasm" ] || { echo "error: $wasm not found (build it: scripts/setup.sh writes it to ~/.cache/aforo-gateway/wasm/)" >&2; exit 2; }
cat > "$(dirname "$0")/aforo-implementation.yaml" <<YAML
apiVersion: gateway.mulesoft.com/v1alpha1
kind: Extension
metadata:
  name: aforo-metering
spec:
  extends:
  - name: aforo-metering-definition
  - name: envoy-filter
  - name: proxy-wasm-filter
  properties:
    rootId:
      type: string
      default: aforo
    implementation:
      type: string
      default: base64://$(base64 < "$wasm" | tr -d '\n\r')
YAML
echo "wrote $(dirname "$0")/aforo-implementation.yaml"
