"""Helpers for the end-to-end scripts: free ports, waiting, a private Postfix instance, a
private Dovecot LMTP server, and the imipd HTTP API."""
import base64, os, re, shutil, socket, subprocess, time, urllib.error, urllib.request

SECRET_HASH = "$argon2id$v=19$m=19456,t=2,p=1$B0F2MG+3hj5YcWdnc/PYnA$SrAIaYFnoxZud72UuQTe6IR16AN1CycGy1KUeMlexWY"


GIVEN = set()


def free_port():
    """A port nothing listens on, and not one handed out before by this process (two calls in a
    row may otherwise get the same port back)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in GIVEN:
            GIVEN.add(port)
            return port


def wait_port(port, what, deadline=20):
    end = time.time() + deadline
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{what} did not start on {port}")


def eventually(check, what, deadline=30):
    end = time.time() + deadline
    while time.time() < end:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise SystemExit(f"timed out: {what}")


def start_postfix(base, smtp_port, main_extra, files):
    """A Postfix instance with its own config and queue under base/, listening on smtp_port.
    `files` maps file names in its config folder to their contents."""
    conf, queue, data = (f"{base}/{d}" for d in ("conf", "queue", "data"))
    for d in (conf, queue, data):
        os.makedirs(d, exist_ok=True)
    with open("/etc/postfix/master.cf") as f:
        master = f.read().replace(
            "smtp      inet  n       -       y       -       -       smtpd",
            f"127.0.0.1:{smtp_port} inet n - n - - smtpd")
    open(f"{conf}/master.cf", "w").write(master)
    open(f"{conf}/main.cf", "w").write(f"""compatibility_level = 3.6
queue_directory = {queue}
data_directory = {data}
myhostname = relay.test
mydomain = relay.test
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination
maillog_file = /dev/stdout
smtputf8_enable = no
delay_warning_time = 0
""" + main_extra)
    for name, text in files.items():
        open(f"{conf}/{name}", "w").write(text)
    subprocess.run(["chown", "postfix", data], check=True)
    listed = subprocess.run(["postconf", "-h", "alternate_config_directories"], capture_output=True, text=True).stdout
    if conf not in listed:
        subprocess.run(["postconf", "-e", f"alternate_config_directories = {listed.strip()} {conf}".strip()], check=True)
    subprocess.run(["postfix", "-c", conf, "set-permissions"], capture_output=True)
    process = subprocess.Popen(["postfix", "-c", conf, "start-fg"], stdout=open(f"{base}/postfix.log", "w"),
                               stderr=subprocess.STDOUT)
    wait_port(smtp_port, "postfix")
    return process, conf


def stop_postfix(process, conf):
    subprocess.run(["postfix", "-c", conf, "stop"], capture_output=True)
    process.wait(timeout=30)


def start_dovecot(base, lmtp_port, users):
    """A Dovecot LMTP server with Maildirs under base/mail for the given local parts."""
    for d in ("run", "state", "mail"):
        os.makedirs(f"{base}/{d}", exist_ok=True)
    open(f"{base}/users", "w").write("".join(f"{u}::65534:65534::{base}/mail/{u}\n" for u in users))
    open(f"{base}/dovecot.conf", "w").write(f"""base_dir = {base}/run
state_dir = {base}/state
log_path = {base}/dovecot.log
instance_name = imipd-e2e-{lmtp_port}
protocols = lmtp
listen = 127.0.0.1
ssl = no
mail_location = maildir:{base}/mail/%n
first_valid_uid = 1
auth_username_format = %Ln
passdb {{
  driver = passwd-file
  args = {base}/users
}}
userdb {{
  driver = passwd-file
  args = {base}/users
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {lmtp_port}
  }}
}}
service anvil {{
  chroot =
}}
service stats {{
  chroot =
}}
""")
    subprocess.run(["chown", "65534:65534", f"{base}/mail"], check=True)
    subprocess.run(["dovecot", "-c", f"{base}/dovecot.conf"], check=True)
    wait_port(lmtp_port, "dovecot")


def stop_dovecot(base):
    subprocess.run(["dovecot", "-c", f"{base}/dovecot.conf", "stop"], capture_output=True)


def http(port, method, path, user, body=None, headers=None):
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method=method)
    request.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:secret".encode()).decode())
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def fresh(base):
    shutil.rmtree(base, ignore_errors=True)
    os.makedirs(base)


def imipd_config(path, data_dir, lmtp, web, accounts, extra=""):
    """Writes an imipd configuration on loopback ports with `extra` sections and the given
    accounts, each with the password "secret"."""
    with open(path, "w") as f:
        f.write(f'[server]\ndata_dir = "{data_dir}"\nhostname = "mx.example.com"\n'
                f'[lmtp]\nlisten = "127.0.0.1:{lmtp}"\n[http]\nlisten = "127.0.0.1:{web}"\n{extra}')
        for account in accounts:
            f.write(f'[accounts."{account}"]\npassword_hash = "{SECRET_HASH}"\n')


def check_effects(web, log, refused_ok=False):
    """Reads an `imipd bench --log` file; checks that the last 250 for each object shows in its
    account's calendar (the bench stamps create, update and cancel 09:00:00, :01, :02), and that
    nothing appears twice. Returns {uid: (kind, account)} of what was checked."""
    last = {}
    for line in open(log):
        uid, kind, account, code = line.split()[:4]
        if code == "250":
            last[uid] = (kind, account)
        elif not refused_ok or not code.startswith("4"):
            raise SystemExit(f"not accepted: {line.strip()}")
    assert last, "no message was accepted"
    failures = []
    for uid, (kind, account) in sorted(last.items()):
        status, body = http(web, "GET", f"/calendars/{account}/{uid}", account)
        body = body.replace("\r\n ", "")
        if status != 200:
            failures.append(f"{uid} ({kind}): {status}")
            continue
        events = body.count("BEGIN:VEVENT")
        attendees = len(re.findall(r"^ATTENDEE", body, re.M))
        stamp = max(int(s) for s in re.findall(r"^DTSTAMP:20261120T0900(\d\d)Z", body, re.M))
        want = {"create": 0, "update": 1, "cancel": 2}[kind]
        if events != 2 or attendees != 8:
            failures.append(f"{uid}: {events} VEVENTs, {attendees} ATTENDEEs (an effect twice?)")
        if stamp < want:
            failures.append(f"{uid}: {['create', 'update', 'cancel'][stamp]} shows after a 250 for {kind}")
        if kind == "cancel" and body.count("STATUS:CANCELLED") != 2:
            failures.append(f"{uid}: cancelled but not shown so")
    assert not failures, "\n".join(failures[:20])
    return last
