#!/bin/sh
# The manual procedure as a straight shell script (Debian 13 / Epoxy or Debian 12 / Zed),
# the way a careful admin would type it from the install guide, with the same settings
# stack-tui makes (docs/epoxy.md): the baseline stack-tui is measured against.
# REL=13 (default) or REL=12 picks the release's differences.
# Runs ON the host as root. Passwords come from the environment (ADMIN_PASS, DEMO_PASS,
# KEYSTONE_DBPASS, GLANCE_DBPASS, GLANCE_PASS, RABBIT_PASS); IMAGE is the image path;
# HOST the management/endpoint address. Prints "@@ <phase> <epoch>" markers for timing.
# COMPUTE=1: the package transaction also takes Placement, Nova and Neutron (REL's
# mechanism), and the script stops before its "end" mark: bench/manual-compute.sh follows.
set -eu
REL=${REL:-13}
mark() { echo "@@ $1 $(date +%s.%N)"; }
export DEBIAN_FRONTEND=noninteractive
COMPUTE_PACKAGES=
if [ "${COMPUTE:-0}" = 1 ]; then
  [ "$REL" = 13 ] && L2=neutron-openvswitch-agent || L2=neutron-linuxbridge-agent
  COMPUTE_PACKAGES="placement-api neutron-server $L2 neutron-dhcp-agent neutron-l3-agent
    neutron-metadata-agent iputils-ping nova-api nova-conductor nova-scheduler nova-consoleproxy
    nova-compute nova-compute-kvm"
fi

mark prepare
cat <<EOF | debconf-set-selections
keystone keystone/configure_db boolean false
keystone keystone/create-admin-tenant boolean false
keystone keystone/register-endpoint boolean false
glance-common glance/configure_db boolean false
glance-common glance/configure_rabbit boolean false
glance-common glance/configure_ksat boolean false
glance-api glance/configure_api-endpoint boolean false
EOF
apt-get update -q >/dev/null
# With compute, a dozen Nova and Neutron daemons would start unconfigured and crash-loop
# (Restart=on-failure) through the whole transaction, each restart also pulling keystone's
# uWSGI back up (they Want= it): keep every service from starting during the install, as
# stack-tui does; each section below starts its own.
[ "${COMPUTE:-0}" = 1 ] && printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && \
  chmod 755 /usr/sbin/policy-rc.d
apt-get install -y -q --no-install-recommends python3-openstackclient mariadb-server \
  python3-pymysql rabbitmq-server memcached python3-memcache keystone apache2 \
  libapache2-mod-wsgi-py3 glance-api $COMPUTE_PACKAGES >/dev/null
rm -f /usr/sbin/policy-rc.d

mark mariadb
cat > /etc/mysql/mariadb.conf.d/99-openstack.cnf <<EOF
[mysqld]
bind-address = $HOST
default-storage-engine = innodb
max_connections = 4096
collation-server = utf8_general_ci
character-set-server = utf8
EOF
systemctl enable mariadb
systemctl restart mariadb
mysql <<EOF
CREATE DATABASE keystone;
GRANT ALL PRIVILEGES ON keystone.* TO 'keystone'@'localhost' IDENTIFIED BY '$KEYSTONE_DBPASS';
GRANT ALL PRIVILEGES ON keystone.* TO 'keystone'@'%' IDENTIFIED BY '$KEYSTONE_DBPASS';
CREATE DATABASE glance;
GRANT ALL PRIVILEGES ON glance.* TO 'glance'@'localhost' IDENTIFIED BY '$GLANCE_DBPASS';
GRANT ALL PRIVILEGES ON glance.* TO 'glance'@'%' IDENTIFIED BY '$GLANCE_DBPASS';
EOF

mark rabbitmq
systemctl enable rabbitmq-server
systemctl start rabbitmq-server
rabbitmqctl add_user openstack "$RABBIT_PASS"
rabbitmqctl set_permissions openstack ".*" ".*" ".*"
rabbitmqctl delete_user guest

mark memcached
sed -i "s/^-l .*/-l $HOST/" /etc/memcached.conf
systemctl enable memcached
systemctl restart memcached

mark keystone
# Debian's package started uWSGI keystone on :5000; Apache needs the port.  Masked, not
# just disabled: every other OpenStack unit Wants= it, and their restarts would start it
# again (a stop can also be cancelled by such a start: stop until it is stopped).
systemctl mask -q keystone
until systemctl stop keystone; do sleep 1; done
cat > /tmp/ks.ini <<EOF
[database]
connection = mysql+pymysql://keystone:$KEYSTONE_DBPASS@$HOST/keystone
[token]
provider = fernet
[cache]
enabled = true
backend = oslo_cache.memcache_pool
memcache_servers = $HOST:11211
EOF
[ "$REL" = 13 ] && printf '[identity]\nmax_password_length = 72\n' >> /tmp/ks.ini
python3 - <<'EOF'
import configparser
src = configparser.RawConfigParser(); src.read("/tmp/ks.ini")
dst = configparser.RawConfigParser(); dst.read("/etc/keystone/keystone.conf")
for s in src.sections():
    if not dst.has_section(s): dst.add_section(s)
    for k, v in src.items(s): dst.set(s, k, v)
with open("/etc/keystone/keystone.conf", "w") as f: dst.write(f)
EOF
su -s /bin/sh -c "keystone-manage db_sync" keystone
keystone-manage fernet_setup --keystone-user keystone --keystone-group keystone
keystone-manage credential_setup --keystone-user keystone --keystone-group keystone
keystone-manage bootstrap --bootstrap-password "$ADMIN_PASS" \
  --bootstrap-admin-url http://$HOST:5000/v3/ --bootstrap-internal-url http://$HOST:5000/v3/ \
  --bootstrap-public-url http://$HOST:5000/v3/ --bootstrap-region-id RegionOne
echo "ServerName $HOST" > /etc/apache2/conf-available/servername.conf
a2enconf servername
cat > /etc/apache2/sites-available/keystone.conf <<EOF
Listen 5000
<VirtualHost *:5000>
    WSGIScriptAlias / /usr/bin/keystone-wsgi-public
    WSGIDaemonProcess keystone-public processes=4 threads=1 user=keystone group=keystone display-name=%{GROUP} lang=C.UTF-8 locale=C.UTF-8
    WSGIProcessGroup keystone-public
    WSGIApplicationGroup %{GLOBAL}
    WSGIPassAuthorization On
    ErrorLog /var/log/apache2/keystone.log
    CustomLog /var/log/apache2/keystone_access.log combined
    <Directory /usr/bin>
        Require all granted
    </Directory>
</VirtualHost>
EOF
a2ensite keystone
systemctl enable apache2
systemctl restart apache2
export OS_USERNAME=admin OS_PASSWORD="$ADMIN_PASS" OS_PROJECT_NAME=admin \
  OS_USER_DOMAIN_NAME=Default OS_PROJECT_DOMAIN_NAME=Default \
  OS_AUTH_URL=http://$HOST:5000/v3 OS_IDENTITY_API_VERSION=3 OS_IMAGE_API_VERSION=2
until curl -sf -o /dev/null http://$HOST:5000/v3/; do sleep 1; done
openstack project create --domain default --description "Service Project" service
openstack project create --domain default --description "Demo Project" demo
openstack user create --domain default --password "$DEMO_PASS" demo
openstack role add --project demo --user demo member

mark glance
openstack user create --domain default --password "$GLANCE_PASS" glance
openstack role add --project service --user glance admin
openstack role show service >/dev/null 2>&1 || openstack role create service
openstack role add --project service --user glance service
openstack service create --name glance --description "OpenStack Image" image
openstack endpoint create --region RegionOne image public http://$HOST:9292
openstack endpoint create --region RegionOne image internal http://$HOST:9292
openstack endpoint create --region RegionOne image admin http://$HOST:9292
cat > /tmp/gl.ini <<EOF
[database]
connection = mysql+pymysql://glance:$GLANCE_DBPASS@$HOST/glance
[keystone_authtoken]
www_authenticate_uri = http://$HOST:5000
auth_url = http://$HOST:5000
memcached_servers = $HOST:11211
auth_type = password
project_domain_name = Default
user_domain_name = Default
project_name = service
username = glance
password = $GLANCE_PASS
region_name = RegionOne
service_token_roles_required = true
service_token_roles = service
[paste_deploy]
flavor = keystone
[glance_store]
default_backend = fs
[fs]
filesystem_store_datadir = /var/lib/glance/images/
[os_glance_staging_store]
filesystem_store_datadir = /var/lib/glance/staging/
[os_glance_tasks_store]
filesystem_store_datadir = /var/lib/glance/tasks_work_dir/
EOF
install -d -o glance -g glance -m 750 /var/lib/glance/staging /var/lib/glance/tasks_work_dir
python3 - <<'EOF'
import configparser
src = configparser.RawConfigParser(); src.read("/tmp/gl.ini")
dst = configparser.RawConfigParser(); dst.read("/etc/glance/glance-api.conf")
for s in src.sections():
    if not dst.has_section(s): dst.add_section(s)
    for k, v in src.items(s): dst.set(s, k, v)
dst.set("DEFAULT", "enabled_backends", "fs:file")
with open("/etc/glance/glance-api.conf", "w") as f: dst.write(f)
EOF
su -s /bin/sh -c "glance-manage db_sync" glance
su -s /bin/sh -c "glance-manage db_load_metadefs" glance
systemctl enable glance-api
systemctl restart glance-api
until curl -s -o /dev/null http://$HOST:9292/; do sleep 1; done

mark image
openstack image create "cirros" --file "$IMAGE" --disk-format qcow2 \
  --container-format bare --public
until openstack image show cirros -f value -c status | grep -qx active; do sleep 1; done

mark finish
cat > /root/admin-openrc.sh <<EOF
export OS_PROJECT_DOMAIN_NAME=Default
export OS_USER_DOMAIN_NAME=Default
export OS_PROJECT_NAME=admin
export OS_USERNAME=admin
export OS_PASSWORD=$ADMIN_PASS
export OS_AUTH_URL=http://$HOST:5000/v3
export OS_IDENTITY_API_VERSION=3
export OS_IMAGE_API_VERSION=2
EOF
sed -e "s/=admin$/=demo/" -e "s/^export OS_PASSWORD=.*/export OS_PASSWORD=$DEMO_PASS/" \
  /root/admin-openrc.sh > /root/demo-openrc.sh
. /root/admin-openrc.sh && openstack token issue -f value -c id >/dev/null
. /root/demo-openrc.sh && openstack token issue -f value -c id >/dev/null
openstack image list
[ "${COMPUTE:-0}" = 1 ] || mark end
