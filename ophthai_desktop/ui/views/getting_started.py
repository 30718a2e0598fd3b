"""Help ▸ Getting started: a clinician's first hour, in the window (the workstation may
be offline, so no web page).

All of the text lives here. A menu path is written in bold as "Menu ▸ Entry", with the
entry's text as its menu shows it: a test checks each against the window's menus. Keys
are not named here (they differ between platforms); Help ▸ Keyboard shortcuts lists them.
"""

from __future__ import annotations

import re

TITLE = "Getting started"

#: Rich text for a read-only text browser.
TEXT = """
<h2>Your first hour with OphthAI Desktop</h2>
<p>OphthAI files OCT, OCTA and fundus images under patients, and an AI model on this
computer analyses them. Its results are an aid: each stays <b>PRELIMINARY</b> until a
clinician approves or rejects it.</p>

<h3>1. Add a patient</h3>
<p><b>File ▸ New patient…</b> opens the form: only the name is required. The patient list
on the left holds every patient; type in its search box (<b>Edit ▸ Find patient</b>) to
find one by name or ID, and click a patient to open their page on the right.</p>

<h3>2. Drop or import a scan</h3>
<p>Drag image files from a folder onto the window, or choose them with
<b>File ▸ Import image…</b>. They go to the patient shown; with no patient open, a form
for a new patient opens with them. Each image is checked before anything is stored: a
file that is not an image, is too large or is damaged is named with the reason. The
images are on the patient's <b>Scans</b> tab (zoom, pan, brightness and contrast).</p>

<h3>3. Analyse</h3>
<p>Each image added queues its analysis by itself; <b>AI ▸ Analyse</b> (or the Analyse
button on the <b>Analysis</b> tab) runs one again for the patient shown. The model has to
be installed: <b>AI ▸ Model manager…</b> shows its state and downloads it. Installed, it
loads by itself for the first analysis, and the status bar at the foot of the window
says where it stands. The
<b>Job queue</b> at the bottom lists the analyses running and waiting, and why they
wait.</p>

<h3>4. Read the result</h3>
<p>On the <b>Analysis</b> tab the model's reasoning appears as it is written, then the
result card: classification, confidence, findings, recommendation and explanation,
marked <b>PRELIMINARY</b> until it is validated. <b>Copy result</b> puts it on the
clipboard as text for your notes; which model gave it, and how, is one click away
(provenance).</p>

<h3>5. Approve or reject</h3>
<p>Under <b>Validation</b>, check your name in <i>Clinician</i> (set it once in
<b>Tools ▸ Settings…</b>, as the name in the audit trail), add notes if you wish, and
press <b>Approve</b> or <b>Reject</b>. The verdict is recorded under your name. An answer
the model gave that could not be read can only be rejected or analysed again.</p>

<h3>6. Schedule the follow-up</h3>
<p>Under <b>Follow-up appointment</b> on the same tab, pick the date and time and press
<b>Schedule</b>; pressing it again moves the appointment, and <b>Cancel appointment</b>
calls it off. The steps at the top of the patient page show where the patient is:
Analysis, Validation, Scheduling, Complete.</p>

<h3>7. The watch folder</h3>
<p>A scanner or a shared folder can put images in the watch folder: each new image
becomes a patient with a queued analysis and a notification, once. Turn it on and
choose the folder in <b>Tools ▸ Settings…</b> ("Take in images from the watch folder").
<b>Tools ▸ Open watch folder</b> opens it in the file manager,
<b>View ▸ Watch folder status…</b> says what it is doing, and
<b>View ▸ Pause watch folder</b> stops it taking in files until you resume it. Files it
did not take in are named in the status bar and the notifications.</p>

<h3>8. Notifications</h3>
<p>The <b>Notifications</b> panel at the bottom (<b>View ▸ Notifications</b>) lists
critical findings, images that could not be graded, new scans from the watch folder and
files refused; its title counts the unread ones. Click one to open its patient.
Critical findings also show as a message from the system tray, or in the window where
there is no tray. Approving or rejecting a result marks its notifications read.</p>

<h3>Finding your way</h3>
<p><b>Help ▸ Keyboard shortcuts</b> lists every key. <b>View ▸ Next area</b> moves
between the patient list, the patient page, the notifications and the job queue.
Closing the window may leave OphthAI running in the system tray, so that analyses and
the watch folder carry on; <b>File ▸ Quit</b> ends it.</p>
"""


#: A menu path in :data:`TEXT`: ``<b>Menu ▸ Entry</b>``.
MENU_PATH = re.compile(r"<b>([^<▸]+ ▸ [^<▸]+)</b>")


def rich_text() -> str:
    """:data:`TEXT` as shown: each menu path kept on one line (non-breaking spaces), as
    one broken at its ▸ reads as two things to look for."""
    return MENU_PATH.sub(lambda path: path.group(0).replace(" ", "\u00a0"), TEXT)
