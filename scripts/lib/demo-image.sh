# shellcheck shell=bash
# demo_image NAME: builds streamspace/NAME:local from images/NAME/build.sh
# when it is missing or was made from another recipe (library + script, the
# hash `streamspace up` checks too: crates/cli/src/image.rs), so a changed
# image never goes untested. Run from the repository's root.
demo_image() {
  local name=$1 recipe
  recipe=$(cat images/lib/debian-rootfs.sh "images/$name/build.sh" | sha256sum | cut -c1-16)
  if [[ $(docker image inspect -f '{{index .Config.Labels "io.streamspace.recipe"}}' \
    "streamspace/$name:local" 2>/dev/null) == "$recipe" ]]; then
    echo "==> image streamspace/$name:local: present, recipe $recipe"
    return
  fi
  echo "==> building image streamspace/$name:local (recipe $recipe)"
  STREAMSPACE_IMAGE_RECIPE=$recipe "images/$name/build.sh"
}

# vm_image [OUTPUT]: builds the demo VM disk (images/vm/build.sh; default
# /var/lib/streamspace/vm/demo.qcow2) unless OUTPUT.recipe says it was made
# from the same recipe (build.sh checks), and exports its path as
# STREAMSPACE_VM_IMAGE for the libvirt tests.
vm_image() {
  local out
  out=$(images/vm/build.sh "$@" | tail -n 1) || return 1
  export STREAMSPACE_VM_IMAGE=$out
}
