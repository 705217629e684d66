// The template form's virtual-machine parts (the libvirt platform,
// docs/VM.md): the choice between a container and a VM, and a VM's firmware
// and home disk. A VM template runs on libvirt alone, and the API refuses
// the container-only fields on it, so the form neither shows nor sends them.

import type { Template, TemplateDraftInput } from '../../api';
import { Field } from '../../components/ui';

export type Firmware = NonNullable<Template['vm']>['firmware'];

/** The VM fields as typed. */
export type VmDraft = { firmware: Firmware; home_size: string };

export const VM_DEFAULTS: VmDraft = { firmware: 'bios', home_size: '' };

/** The one platform a VM template names. */
export const LIBVIRT = 'libvirt';

/** Platforms a container template may name (none checked: any of them). */
export const CONTAINER_PLATFORMS = ['docker', 'kubernetes'];

/** QEMU's VNC display: the libvirt agent tunnels the domain's VNC server whatever the number. */
export const VM_PORTS = [{ name: 'vnc', port: '5900', protocol: 'vnc' as const, path: '' }];

export function isVm(platforms: string[]): boolean {
  return platforms.includes(LIBVIRT);
}

export function vmDraft(vm: Template['vm']): VmDraft {
  return vm ? { firmware: vm.firmware ?? 'bios', home_size: vm.home_size ?? '' } : VM_DEFAULTS;
}

/** The `vm` section; the home disk's size only with a persistent home (the API refuses it otherwise). */
export function vmInput(d: VmDraft, persistentHome: boolean): TemplateDraftInput['vm'] {
  const size = d.home_size.trim();
  return { firmware: d.firmware, home_size: persistentHome && size ? size : undefined };
}

/** Drops what only a container has from a template's input (docs/VM.md lists why each is refused). */
export function forVm(input: TemplateDraftInput, d: VmDraft, persistentHome: boolean): TemplateDraftInput {
  return {
    ...input,
    platforms: [LIBVIRT],
    pids_limit: undefined,
    capabilities: [],
    env: {},
    secret_env: {},
    user_env: [],
    registry_auth: null,
    shm_size: undefined,
    user: undefined,
    read_only_root_filesystem: false,
    volumes: [],
    resources: { ...input.resources, gpu: undefined },
    max_resources: { ...input.max_resources, gpu: undefined },
    desktop: { ...input.desktop, file_transfer: undefined },
    vm: vmInput(d, persistentHome),
  };
}

/** Container or virtual machine: radio buttons that set the platforms. */
export function KindChoice({ vm, onVm }: { vm: boolean; onVm: (vm: boolean) => void }) {
  return (
    <fieldset class="field span-2">
      <legend>Runs as</legend>
      <div class="checks" id="tpl-kind">
        <label class="check">
          <input type="radio" name="tpl-kind" id="tpl-kind-container" checked={!vm} onChange={() => onVm(false)} />
          Container (Docker, Kubernetes)
        </label>
        <label class="check">
          <input type="radio" name="tpl-kind" id="tpl-kind-vm" checked={vm} onChange={() => onVm(true)} />
          Virtual machine (libvirt)
        </label>
      </div>
    </fieldset>
  );
}

type Props = {
  vm: VmDraft;
  persistentHome: boolean;
  onChange: (vm: VmDraft) => void;
  errFor: (ctl: string) => string | null | undefined;
};

/** Firmware and home disk size, for a VM template. */
export function VmSection({ vm, persistentHome, onChange, errFor }: Props) {
  return (
    <section class="card form-section" aria-labelledby="sec-vm">
      <h2 id="sec-vm">Virtual machine</h2>
      <p class="muted small">
        Each session boots a copy-on-write overlay of the base disk with the CPU (whole vCPUs) and memory above; the viewer
        shows the VM’s own VNC display. Hibernating saves its memory, so it wakes where it was. File transfer is off: the
        agent cannot reach into a running VM’s disk.
      </p>
      <div class="form-grid">
        <Field label="Firmware" id="tpl-vm-firmware" error={errFor('tpl-vm-firmware')} hint="UEFI needs OVMF on the host.">
          <select
            id="tpl-vm-firmware"
            value={vm.firmware}
            onChange={(e) => onChange({ ...vm, firmware: e.currentTarget.value as Firmware })}
          >
            <option value="bios">BIOS</option>
            <option value="uefi">UEFI</option>
          </select>
        </Field>
        <Field
          label="Home disk size"
          id="tpl-vm-home_size"
          error={errFor('tpl-vm-home_size')}
          hint={
            persistentHome
              ? 'A second disk per user that outlives sessions, 64Mi to 1Ti; empty for 1Gi.'
              : 'Check “Keep each user’s home folder” above to give each user a home disk.'
          }
        >
          <input
            id="tpl-vm-home_size"
            class="mono"
            placeholder="1Gi"
            value={vm.home_size}
            disabled={!persistentHome}
            onInput={(e) => onChange({ ...vm, home_size: e.currentTarget.value })}
            aria-invalid={!!errFor('tpl-vm-home_size')}
          />
        </Field>
      </div>
    </section>
  );
}
