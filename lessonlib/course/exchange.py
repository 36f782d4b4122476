"""nbgrader's exchange collect, where a submission counts for the user who made it.

nbgrader files a submission under the student id at the start of its folder's name in the exchange's inbound folder
(``alice+00_orientation+<timestamp>+<random>``). That folder is writable by everyone, so any student can drop in a
folder named after someone else, later than theirs: plain collect takes the latest, so it would replace that
student's work, with only a warning ("cheating attempt?"). On a machine where every student is their own Linux user
(the class's hub, hub/), the folder's owner says who made it: this collect files such a submission under its
owner, with a warning naming both, so it can never replace another student's.

It changes nothing where the owner says nothing: a folder owned by the user collecting, or by a uid this machine
cannot name (a Kubernetes pod without the class's accounts). The class's hub turns it on in the instructor's
course (hub/setup_hub.py):

    c.ExchangeFactory.collect = "lessonlib.course.exchange.OwnerCollect"
"""
from __future__ import annotations

import os
import pwd

from nbgrader.exchange.default.collect import ExchangeCollect


class OwnerCollect(ExchangeCollect):
    def _path_to_record(self, path):
        record = super()._path_to_record(path)
        try:
            status = os.stat(path)
            owner = pwd.getpwuid(status.st_uid).pw_name
        except (OSError, KeyError):
            return record
        if status.st_uid != os.getuid() and owner != record["username"]:
            self.log.warning("%s is named as %s's submission but %s made it: collected as %s's",
                             os.path.basename(path), record["username"], owner, owner)
            record["username"] = owner
        return record
