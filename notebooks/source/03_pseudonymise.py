# %% [markdown]
# # Lesson 3: Pseudonymise, and why plain hashing fails
#
# A Danish CPR number is `DDMMYY-SSSS`: the birth date and a four-digit serial. The centre
# must never publish or share it, and the research dataset must not hold it either. But the
# dataset still has to know that two forms belong to the same person. The usual idea,
# "replace the CPR number by its hash", does not work: there are so few CPR numbers that an
# attacker hashes all of them and looks the hash up.
#
# In this lesson you run that dictionary attack, time it, and see why studylib uses HMAC with a
# secret key instead (DESIGN section 4). All CPR numbers here are synthetic.

# %% tags=["parameters"]
seed = 2007
sample_size = 200_000  # CPR numbers hashed to time the attack

# %%
import hashlib
import hmac
import secrets
import time
from datetime import date, timedelta

import numpy as np

rng = np.random.default_rng(seed)

def cpr(birth: date, serial: int) -> str:
    return f"{birth:%d%m%y}-{serial:04d}"

# a synthetic person
birth = date(1994, 3, 17)
target_cpr = cpr(birth, int(rng.integers(0, 10_000)))
plain_token = hashlib.sha256(target_cpr.encode()).hexdigest()
print("the 'pseudonym' a naive system stores:", plain_token[:24], "...")

# %% [markdown]
# ## How big is the CPR space?
#
# 100 years of birth dates times 10,000 serials:

# %%
cpr_space = 36_525 * 10_000
print(f"{cpr_space:,} possible CPR numbers (about {cpr_space:.1e})")

# %% [markdown]
# ## Timing plain hashing
#
# How many CPR numbers can one core hash per second? (A graphics card does thousands of times more.)

# %%
start_day = date(1990, 1, 1)
candidates = [cpr(start_day + timedelta(days=int(d)), int(s))
              for d, s in zip(rng.integers(0, 36_525, sample_size), rng.integers(0, 10_000, sample_size))]
t0 = time.perf_counter()
for c in candidates:
    hashlib.sha256(c.encode()).hexdigest()
rate = sample_size / (time.perf_counter() - t0)
print(f"{rate:,.0f} hashes per second; the whole CPR space in {cpr_space / rate / 60:,.1f} minutes on one core")

# %% [markdown]
# ### Exercise 1
#
# The attacker often knows more than nothing: the birth date is printed in the same table as
# the token, or guessed from the age. Write `dictionary_attack(token, birth)` that tries all
# 10,000 serials of that birth date and returns the CPR number whose SHA-256 is `token`
# (or None). Time it.

# %% tags=["exercise"]
def dictionary_attack(token: str, birth: date) -> str | None:
    return None  # your code here

# %% tags=["solution"]
def dictionary_attack(token: str, birth: date) -> str | None:
    for serial in range(10_000):
        guess = cpr(birth, serial)
        if hashlib.sha256(guess.encode()).hexdigest() == token:
            return guess
    return None

# %%
t0 = time.perf_counter()
found = dictionary_attack(plain_token, birth)
print(f"recovered: {found} in {time.perf_counter() - t0:.3f} s; correct: {found == target_cpr}")

# %% [markdown]
# ## Keyed tokens: HMAC-SHA256 with a secret key
#
# studylib's tokens are HMAC-SHA256 under a key of 32 random bytes that never lies with the data
# (`studylib key new`). Without the key, the attacker's hashes match nothing: trying keys
# instead of CPR numbers means searching 2^256 of them.

# %%
from studylib.privacy.tokens import keyed_digests

key = secrets.token_bytes(32)  # in real use: read_key(path), never printed
keyed_token = keyed_digests([f"cpr:{target_cpr}"], key, purpose="person")[0]
print("keyed token:", keyed_token[:24], "...")
print("the dictionary attack on the keyed token finds:", dictionary_attack(keyed_token, birth))

# %% [markdown]
# The same key gives the same token in every run (forms still link), and with the key an
# HMAC can be checked with the standard library alone:

# %%
SEP = b"\x1f"  # the separator studylib puts between the purpose and the value

stdlib = hmac.new(key, b"person" + SEP + f"cpr:{target_cpr}".encode(), hashlib.sha256).hexdigest()
print("stdlib hmac agrees:", stdlib == keyed_token)

# %% [markdown]
# ### Exercise 2
#
# The attacker has stolen the dataset but not the key, and tries 10^9 keys per second.
# Compute `years_to_search` for the whole key space of 32 random bytes (use 3.15e7 seconds a year).

# %% tags=["exercise"]
years_to_search = None  # your code here

# %% tags=["solution"]
years_to_search = 2 ** 256 / 1e9 / 3.15e7

# %%
print(f"years to search every key: {years_to_search:.2e}" if years_to_search else "not answered yet")

# %% [markdown]
# ### Exercise 3 (discussion)
#
# Name two things that keep a keyed token safe which have nothing to do with mathematics.

# %% [markdown] tags=["solution"]
# *Teacher's notes.* The key is kept apart from the data (its own file, mode 600, never in a
# notebook, log, report or manifest) and only the few people who run ingest can read it; and
# a token is still a pseudonym, not anonymity: with rare combinations (a 15-year-old from one
# country in one municipality) a person is recognised without any key (lesson 4).
