#!/bin/sh
# The compute half of the manual procedure as a straight shell script: Placement, Neutron and
# Nova (controller and compute on one host) from the install guide, with the settings
# stack-tui writes (docs/compute.md), then the test boot stack-tui ends with.  It follows
# bench/manual.sh run with COMPUTE=1 (one package transaction for everything) on the same
# host, as root, with the same environment plus PLACEMENT_DBPASS, PLACEMENT_PASS,
# NEUTRON_DBPASS, NEUTRON_PASS, NOVA_DBPASS, NOVA_PASS and METADATA_SECRET.
# REL=13: Neutron with Open vSwitch's userspace datapath (Linux bridge is gone from Epoxy);
# REL=12: Neutron with Linux bridge (experimental in Zed).
# Prints "@@ <phase> <epoch>" markers for timing; "@@ end" last.
set -eu
REL=${REL:-13}
mark() { echo "@@ $1 $(date +%s.%N)"; }
q() { "$@" >/dev/null; }
export DEBIAN_FRONTEND=noninteractive
export OS_USERNAME=admin OS_PASSWORD="$ADMIN_PASS" OS_PROJECT_NAME=admin \
  OS_USER_DOMAIN_NAME=Default OS_PROJECT_DOMAIN_NAME=Default \
  OS_AUTH_URL=http://$HOST:5000/v3 OS_IDENTITY_API_VERSION=3 OS_IMAGE_API_VERSION=2
KS=http://$HOST:5000
if [ "$REL" = 13 ]; then
  MECH=openvswitch AGENT=neutron-openvswitch-agent AGENT_TYPE="Open vSwitch agent"
  QUORUM='[oslo_messaging_rabbit]
rabbit_quorum_queue = true
rabbit_transient_quorum_queue = true
use_queue_manager = true'
else
  MECH=linuxbridge AGENT=neutron-linuxbridge-agent AGENT_TYPE="Linux bridge agent"
  QUORUM=
fi

# merge FILE: set the ini settings read from stdin in FILE (sections and keys kept otherwise)
cat > /root/merge.py <<'EOF'
import configparser, sys
def parser():
    p = configparser.RawConfigParser(strict=False, default_section="\0")
    p.optionxform = str
    return p
src, dst = parser(), parser()
src.read_string(sys.stdin.read()); dst.read(sys.argv[1])
for s in src.sections():
    if not dst.has_section(s): dst.add_section(s)
    for k, v in src.items(s): dst.set(s, k, v)
with open(sys.argv[1], "w") as f: dst.write(f)
EOF
merge() { python3 /root/merge.py "$1"; }
# authtoken/auth sections a service needs (user, password)
authtoken() { cat <<EOF
[keystone_authtoken]
www_authenticate_uri = $KS
auth_url = $KS
memcached_servers = $HOST:11211
auth_type = password
project_domain_name = Default
user_domain_name = Default
project_name = service
username = $1
password = $2
region_name = RegionOne
service_token_roles_required = true
service_token_roles = service
EOF
}
auth() { cat <<EOF
[$1]
auth_url = $KS/v3
auth_type = password
project_domain_name = Default
user_domain_name = Default
project_name = service
username = $2
password = $3
region_name = RegionOne
EOF
}
database() {  # database NAME USER PASS
  mysql <<EOF
CREATE DATABASE $1;
GRANT ALL PRIVILEGES ON $1.* TO '$2'@'localhost' IDENTIFIED BY '$3';
GRANT ALL PRIVILEGES ON $1.* TO '$2'@'%' IDENTIFIED BY '$3';
EOF
}
service_user() {  # service_user USER PASS
  q openstack user create --domain default --password "$2" "$1"
  openstack role add --project service --user "$1" admin
  openstack role add --project service --user "$1" service
}
endpoints() {  # endpoints NAME TYPE DESCRIPTION URL
  q openstack service create --name "$1" --description "$3" "$2"
  for i in public internal admin; do q openstack endpoint create --region RegionOne "$2" $i "$4"; done
}
uwsgi_processes() {  # uwsgi_processes INI N: Debian's defaults are for big hosts
  [ -f "$1" ] || return 0
  sed -i '/^processes *=/d' "$1"
  sed -i "s/^\[uwsgi\]$/[uwsgi]\nprocesses = $2/" "$1"
}
wait_http() { until curl -s -o /dev/null --max-time 5 "$1"; do sleep 1; done; }
TRANSPORT="rabbit://openstack:$RABBIT_PASS@$HOST:5672/"

mark placement
database placement placement "$PLACEMENT_DBPASS"
service_user placement "$PLACEMENT_PASS"
endpoints placement placement "Placement API" http://$HOST:8778
{ cat <<EOF
[placement_database]
connection = mysql+pymysql://placement:$PLACEMENT_DBPASS@$HOST/placement?charset=utf8mb4
[api]
auth_strategy = keystone
EOF
  authtoken placement "$PLACEMENT_PASS"; } | merge /etc/placement/placement.conf
su -s /bin/sh -c "placement-manage db sync" placement
# Apache serves Placement like Keystone; the package's uWSGI unit stays off.
systemctl mask --now placement-api
mkdir -p /usr/local/share/wsgi
if [ "$REL" = 13 ]; then
  echo "from placement.wsgi.api import application" > /usr/local/share/wsgi/placement-api.wsgi
else
  printf 'from placement.wsgi import init_application\napplication = init_application()\n' \
    > /usr/local/share/wsgi/placement-api.wsgi
fi
cat > /etc/apache2/sites-available/placement.conf <<EOF
Listen 8778
<VirtualHost *:8778>
    ServerName $HOST
    WSGIScriptAlias / /usr/local/share/wsgi/placement-api.wsgi
    WSGIDaemonProcess placement-api processes=4 threads=1 user=placement group=placement display-name=%{GROUP} lang=C.UTF-8 locale=C.UTF-8
    WSGIProcessGroup placement-api
    WSGIApplicationGroup %{GLOBAL}
    WSGIPassAuthorization On
    LimitRequestBody 114688
    ErrorLog /var/log/apache2/placement.log
    CustomLog /var/log/apache2/placement_access.log combined
    <Directory /usr/local/share/wsgi>
        Require all granted
    </Directory>
</VirtualHost>
EOF
a2ensite -q placement
systemctl restart apache2
until [ "$(curl -s -o /dev/null -w '%{http_code}' http://$HOST:8778/)" = 200 ]; do sleep 1; done
TOKEN=$(openstack token issue -f value -c id)
curl -sf -H "X-Auth-Token: $TOKEN" -H "OpenStack-API-Version: placement 1.0" \
  http://$HOST:8778/resource_providers
echo  # the JSON has no newline of its own

mark neutron
database neutron neutron "$NEUTRON_DBPASS"
service_user neutron "$NEUTRON_PASS"
endpoints neutron network "OpenStack Networking" http://$HOST:9696
# The provider network: a veth pair, the host keeps 172.24.4.1 on stk-ext, Neutron takes
# stk-ext-p (Open vSwitch: a port of the netdev bridge br-provider).
UP="ip link show stk-ext >/dev/null 2>&1 || ip link add stk-ext type veth peer name stk-ext-p; ip addr flush dev stk-ext; ip addr add 172.24.4.1/24 dev stk-ext; ip link set stk-ext up; ip link set stk-ext-p up"
if [ "$REL" = 13 ]; then
  # ovs-vswitchd finishes offloaded checksums (userspace datapath): set before each start
  mkdir -p /etc/systemd/system/ovs-vswitchd.service.d
  cat > /etc/systemd/system/ovs-vswitchd.service.d/offload.conf <<EOF
[Service]
ExecStartPre=/usr/bin/ovs-vsctl --no-wait --timeout=30 set Open_vSwitch . other_config:userspace-tso-enable=true
EOF
  cat > /etc/systemd/system/provider-net.service <<EOF
[Unit]
Wants=openvswitch-switch.service
After=network.target openvswitch-switch.service
Before=neutron-openvswitch-agent.service
[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh -c '$UP'
ExecStart=/usr/bin/ovs-vsctl --timeout=30 --may-exist add-br br-provider -- set bridge br-provider datapath_type=netdev -- --may-exist add-port br-provider stk-ext-p
[Install]
WantedBy=multi-user.target
EOF
  systemctl daemon-reload
  systemctl restart ovs-vswitchd
  AGENT_INI=/etc/neutron/plugins/ml2/openvswitch_agent.ini
  AGENT_CONF="[ovs]
datapath_type = netdev
bridge_mappings = provider:br-provider
local_ip = $HOST
[agent]
tunnel_types = vxlan
l2_population = true
[securitygroup]
enable_security_group = true
firewall_driver = openvswitch"
  EXPERIMENTAL=
else
  cat > /etc/systemd/system/provider-net.service <<EOF
[Unit]
Before=neutron-linuxbridge-agent.service
After=network.target
[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh -c '$UP'
[Install]
WantedBy=multi-user.target
EOF
  systemctl daemon-reload
  AGENT_INI=/etc/neutron/plugins/ml2/linuxbridge_agent.ini
  AGENT_CONF="[linux_bridge]
physical_interface_mappings = provider:stk-ext-p
[vxlan]
enable_vxlan = true
local_ip = $HOST
l2_population = true
[securitygroup]
enable_security_group = true
firewall_driver = neutron.agent.linux.iptables_firewall.IptablesFirewallDriver"
  EXPERIMENTAL="[experimental]
linuxbridge = true"
fi
systemctl enable --now provider-net
{ cat <<EOF
[DEFAULT]
core_plugin = ml2
service_plugins = router
interface_driver = $MECH
auth_strategy = keystone
notify_nova_on_port_status_changes = true
notify_nova_on_port_data_changes = true
transport_url = $TRANSPORT
rpc_workers = 1
rpc_state_report_workers = 1
[database]
connection = mysql+pymysql://neutron:$NEUTRON_DBPASS@$HOST/neutron?charset=utf8mb4
[oslo_concurrency]
lock_path = /var/lib/neutron/tmp
$QUORUM
$EXPERIMENTAL
EOF
  authtoken neutron "$NEUTRON_PASS"; auth nova nova "$NOVA_PASS"; } | merge /etc/neutron/neutron.conf
merge /etc/neutron/plugins/ml2/ml2_conf.ini <<EOF
[ml2]
type_drivers = flat,vxlan
tenant_network_types = vxlan
mechanism_drivers = $MECH,l2population
extension_drivers = port_security
[ml2_type_flat]
flat_networks = provider
[ml2_type_vxlan]
vni_ranges = 1:1000
EOF
echo "$AGENT_CONF" | merge $AGENT_INI
printf '[DEFAULT]\ninterface_driver = %s\n' $MECH | merge /etc/neutron/l3_agent.ini
merge /etc/neutron/dhcp_agent.ini <<EOF
[DEFAULT]
interface_driver = $MECH
dhcp_driver = neutron.agent.linux.dhcp.Dnsmasq
enable_isolated_metadata = true
EOF
merge /etc/neutron/metadata_agent.ini <<EOF
[DEFAULT]
nova_metadata_host = $HOST
metadata_proxy_shared_secret = $METADATA_SECRET
EOF
uwsgi_processes /etc/neutron/neutron-api-uwsgi.ini 2
su -s /bin/sh -c "neutron-db-manage --config-file /etc/neutron/neutron.conf \
  --config-file /etc/neutron/plugins/ml2/ml2_conf.ini upgrade head" neutron
for u in neutron-api neutron-rpc-server $AGENT neutron-dhcp-agent neutron-l3-agent \
    neutron-metadata-agent; do
  systemctl enable -q $u
  systemctl restart $u
done
wait_http http://$HOST:9696/
until [ "$(openstack network agent list -f value -c 'Agent Type' -c Alive | grep -cE \
    "^($AGENT_TYPE|DHCP agent|L3 agent|Metadata agent) (True|:-\))$")" = 4 ]; do sleep 2; done

mark nova
for db in nova_api nova nova_cell0; do database $db nova "$NOVA_DBPASS"; done
service_user nova "$NOVA_PASS"
endpoints nova compute "OpenStack Compute" http://$HOST:8774/v2.1
NOVA_DB="mysql+pymysql://nova:$NOVA_DBPASS@$HOST"
{ cat <<EOF
[DEFAULT]
transport_url = $TRANSPORT
my_ip = $HOST
[api]
auth_strategy = keystone
[api_database]
connection = $NOVA_DB/nova_api?charset=utf8mb4
[database]
connection = $NOVA_DB/nova?charset=utf8mb4
[service_user]
send_service_user_token = true
[vnc]
enabled = true
server_listen = $HOST
server_proxyclient_address = $HOST
novncproxy_base_url = http://$HOST:6080/vnc_auto.html
[spice]
enabled = false
[glance]
api_servers = http://$HOST:9292
[oslo_concurrency]
lock_path = /var/lib/nova/tmp
[scheduler]
discover_hosts_in_cells_interval = 300
workers = 1
[conductor]
workers = 2
[neutron]
service_metadata_proxy = true
metadata_proxy_shared_secret = $METADATA_SECRET
$QUORUM
EOF
  authtoken nova "$NOVA_PASS"; auth service_user nova "$NOVA_PASS"
  auth placement placement "$PLACEMENT_PASS"; auth neutron neutron "$NEUTRON_PASS"
} | merge /etc/nova/nova.conf
if [ -f /etc/default/nova-consoleproxy ]; then
  sed -i '/^NOVA_CONSOLE_PROXY_TYPE=/d' /etc/default/nova-consoleproxy
  echo NOVA_CONSOLE_PROXY_TYPE=novnc >> /etc/default/nova-consoleproxy
fi
uwsgi_processes /etc/nova/nova-api-uwsgi.ini 2
uwsgi_processes /etc/nova/nova-api-metadata-uwsgi.ini 1
for ini in /etc/nova/nova-api-uwsgi.ini /etc/nova/nova-api-metadata-uwsgi.ini; do
  # uWSGI closes each connection after its answer: say so, as Debian's other API inis do
  if [ -f "$ini" ] && ! grep -q '^add-header = Connection: close' "$ini"; then
    sed -i "s/^\[uwsgi\]$/[uwsgi]\nadd-header = Connection: close/" "$ini"
  fi
done
su -s /bin/sh -c "nova-manage api_db sync" nova
su -s /bin/sh -c "nova-manage cell_v2 map_cell0" nova
su -s /bin/sh -c "nova-manage cell_v2 create_cell --name=cell1 --verbose" nova
su -s /bin/sh -c "nova-manage db sync" nova
# libvirt: nova (group libvirt) on the socket without polkit (not installed); in a
# container the cgroup hierarchies are read-only; QEMU emulation without a usable /dev/kvm
sed -i -E '/^(unix_sock_group|unix_sock_rw_perms|auth_unix_rw) *=/d' /etc/libvirt/libvirtd.conf
printf 'unix_sock_group = "libvirt"\nunix_sock_rw_perms = "0770"\nauth_unix_rw = "none"\n' \
  >> /etc/libvirt/libvirtd.conf
if [ "$(systemd-detect-virt --container || true)" != none ]; then
  sed -i '/^cgroup_controllers *=/d' /etc/libvirt/qemu.conf
  echo 'cgroup_controllers = [ ]' >> /etc/libvirt/qemu.conf
fi
if [ -r /dev/kvm ] && [ -w /dev/kvm ]; then VIRT=kvm; else VIRT=qemu; fi
printf '[libvirt]\nvirt_type = %s\n' $VIRT | merge /etc/nova/nova-compute.conf
systemctl restart libvirtd
for u in nova-api nova-api-metadata nova-scheduler nova-conductor nova-novncproxy nova-compute; do
  systemctl enable -q $u
  systemctl restart $u
done
wait_http http://$HOST:8774/
until su -s /bin/sh -c "nova-manage cell_v2 discover_hosts --verbose >/dev/null 2>&1; \
    nova-manage cell_v2 list_hosts" nova | grep -q " $(hostname) "; do sleep 2; done

mark cloud
q openstack flavor create --vcpus 1 --ram 128 --disk 1 stack-tui.tiny
q openstack network create --share --external --provider-physical-network provider \
  --provider-network-type flat provider
q openstack subnet create --network provider --subnet-range 172.24.4.0/24 --gateway 172.24.4.1 \
  --allocation-pool start=172.24.4.100,end=172.24.4.199 --no-dhcp provider-subnet
export OS_USERNAME=demo OS_PASSWORD="$DEMO_PASS" OS_PROJECT_NAME=demo
q openstack network create demo-net
q openstack subnet create --network demo-net --subnet-range 192.168.100.0/24 \
  --gateway 192.168.100.1 demo-subnet
q openstack router create demo-router
openstack router add subnet demo-router demo-subnet
openstack router set --external-gateway provider demo-router
q openstack security group rule create --protocol icmp default
q openstack security group rule create --protocol tcp --dst-port 22 default
rm -f /root/demo-key /root/demo-key.pub
ssh-keygen -q -t rsa -b 3072 -N "" -C stack-tui-demo -f /root/demo-key
q openstack keypair create --public-key /root/demo-key.pub stack-tui

mark boot
q openstack server create --flavor stack-tui.tiny --image cirros --network demo-net \
  --key-name stack-tui --security-group default stack-tui-verify
i=0
until [ "$(openstack server show stack-tui-verify -f value -c status)" = ACTIVE ]; do
  openstack server show stack-tui-verify -f value -c status | grep -qx ERROR && exit 1
  i=$((i + 1)); [ $i -lt 150 ] || exit 1
  sleep 2
done
PORT=$(openstack port list --server stack-tui-verify -f value -c ID)
FIP=$(openstack floating ip create --port "$PORT" --description stack-tui-verify \
  -f value -c floating_ip_address provider)
i=0
until ping -c 1 -W 2 "$FIP" >/dev/null 2>&1; do
  i=$((i + 1)); [ $i -lt 90 ] || exit 1
  sleep 1
done
CONSOLE=$(openstack console log show stack-tui-verify)
echo "$CONSOLE" | grep "stack-tui-guest: "
echo "$CONSOLE" | grep -q "stack-tui-guest: booted"
echo "stack-tui-verify is ACTIVE; $FIP answers ping"
openstack server delete --wait stack-tui-verify
openstack floating ip delete "$FIP"
mark end
