#!/bin/sh
# Keeps pod traffic on this machine: pods may talk to each other and to the node (services are
# DNAT-ed to endpoints before FORWARD), but nothing from the pod network is forwarded elsewhere,
# including service addresses kube-proxy has not programmed yet.
set -eu
pods="10.244.0.0/16"
iptables -C FORWARD -s "$pods" ! -d "$pods" -j REJECT 2>/dev/null \
  || iptables -I FORWARD 1 -s "$pods" ! -d "$pods" -j REJECT
