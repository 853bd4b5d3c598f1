/*
 * Batch sealing for the store's encryption at rest: one call per write batch (ADR-0025).
 *
 * The same AES-256-GCM and HMAC-SHA256 as the pure-Python path (junction/store/batch_seal.py,
 * on `cryptography` and `hashlib`), through OpenSSL's EVP interface with one cipher context per
 * batch: the per-call set-up and the Python objects between the steps were most of what sealing
 * a new person's record cost.  Every output is byte-for-byte what the Python path makes (the
 * tests compare them); values are opened by `cryptography` as before.
 *
 * Nothing here draws randomness, chooses formats or keeps state between calls: nonces and keys
 * come from the caller, the formats are those of junction/store/crypto.py.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <limits.h>
#include <stdarg.h>
#include <string.h>

/* SHA256_Init/Update/Final: OpenSSL 3 keeps them (deprecated in favour of EVP, whose per-call
 * provider dispatch costs ~2,300 instructions a digest: most of a short message's HMAC) */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/opensslv.h>
#include <openssl/sha.h>

#define KEY_BYTES 32
#define NONCE_BYTES 12
#define TAG_BYTES 16
#define MAC_BYTES 32
#define SHA256_BLOCK 64

static const EVP_CIPHER *gcm;  /* AES-256-GCM, fetched once */
static const EVP_MD *sha256;   /* SHA-256, fetched once */

static PyObject *
openssl_error(const char *what)
{
    PyErr_Format(PyExc_RuntimeError, "OpenSSL failed to %s", what);
    return NULL;
}

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static char b64_pairs[4096][2]; /* every 12 bits of input as its two characters */

static void
b64_init(void)
{
    for (int i = 0; i < 4096; i++) {
        b64_pairs[i][0] = B64[i >> 6];
        b64_pairs[i][1] = B64[i & 63];
    }
}

/* base64 (RFC 4648 section 4, with padding) of n bytes into out; returns the length written
 * (what EVP_EncodeBlock writes, without its terminating NUL; a table of character pairs) */
static Py_ssize_t
b64(const unsigned char *in, Py_ssize_t n, char *out)
{
    char *w = out;
    Py_ssize_t i = 0;
    for (; i + 3 <= n; i += 3) {
        unsigned int v = (unsigned int)in[i] << 16 | (unsigned int)in[i + 1] << 8 | in[i + 2];
        memcpy(w, b64_pairs[v >> 12], 2);
        memcpy(w + 2, b64_pairs[v & 4095], 2);
        w += 4;
    }
    if (n - i == 1) {
        unsigned int v = (unsigned int)in[i] << 16;
        memcpy(w, b64_pairs[v >> 12], 2);
        w[2] = '=';
        w[3] = '=';
        w += 4;
    }
    else if (n - i == 2) {
        unsigned int v = (unsigned int)in[i] << 16 | (unsigned int)in[i + 1] << 8;
        memcpy(w, b64_pairs[v >> 12], 2);
        w[2] = B64[(v >> 6) & 63];
        w[3] = '=';
        w += 4;
    }
    return w - out;
}

/* the decimal digits of v (not negative) into out (at least 20 bytes); returns their count */
static int
decimal(long long v, char *out)
{
    char rev[20];
    int n = 0;
    do {
        rev[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v > 0);
    for (int i = 0; i < n; i++) {
        out[i] = rev[n - 1 - i];
    }
    return n;
}

static Py_ssize_t
b64_len(Py_ssize_t n)
{
    return (n + 2) / 3 * 4;
}

/* the key id a sealed value names, and the check that its subject is ASCII (both name a key
 * in the value's text); 0, or -1 with an exception set */
static int
value_name(PyObject *subject, PyObject *key_id, long long *kid)
{
    if (!PyUnicode_IS_ASCII(subject)) {
        PyErr_SetString(PyExc_ValueError, "subjects must be ASCII");
        return -1;
    }
    *kid = PyLong_AsLongLong(key_id);
    if (*kid == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (*kid < 0) {
        PyErr_SetString(PyExc_ValueError, "key ids must not be negative");
        return -1;
    }
    return 0;
}

/* ---- AES-256-GCM ------------------------------------------------------------------------ */

/* nonce + ciphertext + tag of one message into out (NONCE_BYTES + n + TAG_BYTES bytes).
 * key is NULL when the context already holds the key (one key for the whole batch). */
static int
gcm_seal(EVP_CIPHER_CTX *ctx, const unsigned char *key, const unsigned char *nonce,
         const unsigned char *data, Py_ssize_t n, const unsigned char *aad, Py_ssize_t aad_n,
         unsigned char *out)
{
    int len = 0, fin = 0;
    if (n > INT_MAX - 64 || aad_n > INT_MAX) {
        return 0;
    }
    memcpy(out, nonce, NONCE_BYTES);
    if (EVP_EncryptInit_ex(ctx, NULL, NULL, key, nonce) != 1) {
        return 0;
    }
    if (aad_n > 0 && EVP_EncryptUpdate(ctx, NULL, &len, aad, (int)aad_n) != 1) {
        return 0;
    }
    if (EVP_EncryptUpdate(ctx, out + NONCE_BYTES, &len, data, (int)n) != 1) {
        return 0;
    }
    if (EVP_EncryptFinal_ex(ctx, out + NONCE_BYTES + len, &fin) != 1 || len + fin != n) {
        return 0;
    }
    return EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TAG_BYTES, out + NONCE_BYTES + n) == 1;
}

static EVP_CIPHER_CTX *
new_gcm_context(void)
{
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    if (ctx == NULL) {
        return NULL;
    }
    if (EVP_EncryptInit_ex(ctx, gcm, NULL, NULL, NULL) != 1
        || EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, NONCE_BYTES, NULL) != 1) {
        EVP_CIPHER_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

/* the bytes of a bytes object of exactly `size` bytes (size < 0: any size), else an error */
static const unsigned char *
exact_bytes(PyObject *obj, Py_ssize_t size, const char *what, Py_ssize_t *n)
{
    if (!PyBytes_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s must be bytes", what);
        return NULL;
    }
    if (size >= 0 && PyBytes_GET_SIZE(obj) != size) {
        PyErr_Format(PyExc_ValueError, "%s must be %zd bytes", what, size);
        return NULL;
    }
    if (n != NULL) {
        *n = PyBytes_GET_SIZE(obj);
    }
    return (const unsigned char *)PyBytes_AS_STRING(obj);
}

static int
check_lists(Py_ssize_t n, PyObject *nonces, int count, ...)
{
    va_list args;
    va_start(args, count);
    for (int i = 0; i < count; i++) {
        PyObject *list = va_arg(args, PyObject *);
        if (!PyList_Check(list) || PyList_GET_SIZE(list) != n) {
            va_end(args);
            PyErr_SetString(PyExc_ValueError, "the lists of a batch must have the same length");
            return 0;
        }
    }
    va_end(args);
    if (!PyBytes_Check(nonces) || PyBytes_GET_SIZE(nonces) != n * NONCE_BYTES) {
        PyErr_SetString(PyExc_ValueError, "nonces must be 12 bytes per message, as bytes");
        return 0;
    }
    return 1;
}

PyDoc_STRVAR(encrypt_many_doc,
"encrypt_many(keys, nonces, plaintexts, aads, /) -> list[bytes]\n\n"
"nonce + AES-256-GCM(key, nonce, plaintext, aad) + tag for each message. ``keys`` is one\n"
"32-byte key for all (kept in one cipher context) or a list of one key per message;\n"
"``nonces`` holds 12 bytes per message, concatenated.");

static PyObject *
encrypt_many(PyObject *self, PyObject *args)
{
    PyObject *keys, *nonces, *plaintexts, *aads;
    if (!PyArg_ParseTuple(args, "OSO!O!:encrypt_many", &keys, &nonces, &PyList_Type, &plaintexts,
                          &PyList_Type, &aads)) {
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(plaintexts);
    int one_key = PyBytes_Check(keys);
    if (!check_lists(n, nonces, one_key ? 1 : 2, aads, keys)) {
        return NULL;
    }
    EVP_CIPHER_CTX *ctx = new_gcm_context();
    if (ctx == NULL) {
        return openssl_error("make a cipher context");
    }
    PyObject *out = PyList_New(n);
    if (out == NULL) {
        EVP_CIPHER_CTX_free(ctx);
        return NULL;
    }
    const unsigned char *nonce = (const unsigned char *)PyBytes_AS_STRING(nonces);
    if (one_key) {
        const unsigned char *key = exact_bytes(keys, KEY_BYTES, "the key", NULL);
        if (key == NULL) {
            goto fail;
        }
        if (EVP_EncryptInit_ex(ctx, NULL, NULL, key, NULL) != 1) {
            openssl_error("set the key");
            goto fail;
        }
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        const unsigned char *key = NULL, *data, *aad;
        Py_ssize_t data_n, aad_n;
        if (!one_key) {
            key = exact_bytes(PyList_GET_ITEM(keys, i), KEY_BYTES, "each key", NULL);
            if (key == NULL) {
                goto fail;
            }
        }
        if ((data = exact_bytes(PyList_GET_ITEM(plaintexts, i), -1, "each plaintext", &data_n))
                == NULL
            || (aad = exact_bytes(PyList_GET_ITEM(aads, i), -1, "each associated data", &aad_n))
                   == NULL) {
            goto fail;
        }
        if (data_n > INT_MAX / 2 || aad_n > INT_MAX / 2) {
            PyErr_SetString(PyExc_ValueError, "a message is too large to seal");
            goto fail;
        }
        PyObject *blob = PyBytes_FromStringAndSize(NULL, NONCE_BYTES + data_n + TAG_BYTES);
        if (blob == NULL) {
            goto fail;
        }
        PyList_SET_ITEM(out, i, blob);
        if (!gcm_seal(ctx, key, nonce + i * NONCE_BYTES, data, data_n, aad, aad_n,
                      (unsigned char *)PyBytes_AS_STRING(blob))) {
            openssl_error("encrypt");
            goto fail;
        }
    }
    EVP_CIPHER_CTX_free(ctx);
    return out;
fail:
    EVP_CIPHER_CTX_free(ctx);
    Py_DECREF(out);
    return NULL;
}

/* the UTF-8 of a str (no copy for ASCII strs) */
static const char *
utf8_of(PyObject *obj, const char *what, Py_ssize_t *n)
{
    if (!PyUnicode_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s must be str", what);
        return NULL;
    }
    return PyUnicode_AsUTF8AndSize(obj, n);
}

PyDoc_STRVAR(seal_payloads_doc,
"seal_payloads(keys, key_ids, subjects, record_ids, clears, plaintexts, nonces, /)\n"
"    -> list[str]\n\n"
"Each record's payload with its personal members sealed as its last member: ``clear``\n"
"(the JSON object without them) + ``\"_pii\":\"JX2:<subject>:<key id>:<base64>\"``, the\n"
"AES-256-GCM of ``plaintext`` under the record's data key with associated data\n"
"``records\\x1f<record id>\\x1f<subject>`` (what batch_seal.py_seal_payloads makes).");

static PyObject *
seal_payloads(PyObject *self, PyObject *args)
{
    PyObject *keys, *key_ids, *subjects, *record_ids, *clears, *plaintexts, *nonces;
    if (!PyArg_ParseTuple(args, "O!O!O!O!O!O!S:seal_payloads", &PyList_Type, &keys,
                          &PyList_Type, &key_ids, &PyList_Type, &subjects, &PyList_Type,
                          &record_ids, &PyList_Type, &clears, &PyList_Type, &plaintexts,
                          &nonces)) {
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(keys);
    if (!check_lists(n, nonces, 5, key_ids, subjects, record_ids, clears, plaintexts)) {
        return NULL;
    }
    EVP_CIPHER_CTX *ctx = new_gcm_context();
    if (ctx == NULL) {
        return openssl_error("make a cipher context");
    }
    PyObject *out = PyList_New(n);
    unsigned char *buf = NULL; /* aad, then nonce + ciphertext + tag */
    char *text = NULL;         /* the payload's sealed tail */
    Py_ssize_t buf_cap = 0, text_cap = 0;
    if (out == NULL) {
        EVP_CIPHER_CTX_free(ctx);
        return NULL;
    }
    const unsigned char *nonce = (const unsigned char *)PyBytes_AS_STRING(nonces);
    static const char head[] = "\"_pii\":\"JX2:";
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t subject_n, rid_n, data_n;
        const unsigned char *key, *data;
        const char *subject, *rid;
        PyObject *clear = PyList_GET_ITEM(clears, i);
        if ((key = exact_bytes(PyList_GET_ITEM(keys, i), KEY_BYTES, "each key", NULL)) == NULL
            || (subject = utf8_of(PyList_GET_ITEM(subjects, i), "each subject", &subject_n))
                   == NULL
            || (rid = utf8_of(PyList_GET_ITEM(record_ids, i), "each record id", &rid_n)) == NULL
            || (data = exact_bytes(PyList_GET_ITEM(plaintexts, i), -1, "each plaintext",
                                   &data_n)) == NULL) {
            goto fail;
        }
        if (!PyUnicode_Check(clear) || PyUnicode_GET_LENGTH(clear) < 2
            || PyUnicode_READ_CHAR(clear, PyUnicode_GET_LENGTH(clear) - 1) != '}') {
            PyErr_SetString(PyExc_ValueError, "each clear payload must be a JSON object");
            goto fail;
        }
        long long kid;
        if (value_name(PyList_GET_ITEM(subjects, i), PyList_GET_ITEM(key_ids, i), &kid) < 0) {
            goto fail;
        }
        /* EVP takes int lengths: keep every size well inside them */
        if (data_n > INT_MAX / 2 || rid_n > INT_MAX / 4 || subject_n > 1024) {
            PyErr_SetString(PyExc_ValueError, "a record is too large to seal");
            goto fail;
        }
        Py_ssize_t aad_n = 8 + rid_n + 1 + subject_n;
        Py_ssize_t blob_n = NONCE_BYTES + data_n + TAG_BYTES;
        if (aad_n + blob_n > buf_cap) {
            buf_cap = (aad_n + blob_n) * 2;
            PyMem_Free(buf);
            buf = PyMem_Malloc(buf_cap);
            if (buf == NULL) {
                PyErr_NoMemory();
                goto fail;
            }
        }
        unsigned char *aad = buf, *blob = buf + aad_n;
        memcpy(aad, "records\x1f", 8);
        memcpy(aad + 8, rid, rid_n);
        aad[8 + rid_n] = 0x1f;
        memcpy(aad + 9 + rid_n, subject, subject_n);
        if (!gcm_seal(ctx, key, nonce + i * NONCE_BYTES, data, data_n, aad, aad_n, blob)) {
            openssl_error("encrypt");
            goto fail;
        }
        /* ,"_pii":"JX2:<subject>:<kid>:<base64>"} -- the comma only after other members */
        char kid_text[24];
        int kid_n = decimal(kid, kid_text);
        Py_ssize_t tail_n = 1 + (Py_ssize_t)(sizeof head - 1) + subject_n + 1 + kid_n + 1
                            + b64_len(blob_n) + 2 + 1;
        if (tail_n > text_cap) {
            text_cap = tail_n * 2;
            PyMem_Free(text);
            text = PyMem_Malloc(text_cap);
            if (text == NULL) {
                PyErr_NoMemory();
                goto fail;
            }
        }
        Py_ssize_t clear_n = PyUnicode_GET_LENGTH(clear);
        int empty = clear_n == 2 && PyUnicode_READ_CHAR(clear, 0) == '{';
        char *w = text;
        if (!empty) {
            *w++ = ',';
        }
        memcpy(w, head, sizeof head - 1);
        w += sizeof head - 1;
        memcpy(w, subject, subject_n);
        w += subject_n;
        *w++ = ':';
        memcpy(w, kid_text, kid_n);
        w += kid_n;
        *w++ = ':';
        w += b64(blob, blob_n, w);
        *w++ = '"';
        *w++ = '}';
        Py_ssize_t tail_len = w - text;
        PyObject *payload;
        if (PyUnicode_IS_ASCII(clear)) {
            payload = PyUnicode_New(clear_n - 1 + tail_len, 127);
            if (payload != NULL) {
                char *p = (char *)PyUnicode_DATA(payload);
                memcpy(p, PyUnicode_DATA(clear), clear_n - 1);
                memcpy(p + clear_n - 1, text, tail_len);
            }
        }
        else {
            PyObject *left = PyUnicode_Substring(clear, 0, clear_n - 1);
            PyObject *right = left ? PyUnicode_DecodeASCII(text, tail_len, "strict") : NULL;
            payload = right ? PyUnicode_Concat(left, right) : NULL;
            Py_XDECREF(left);
            Py_XDECREF(right);
        }
        if (payload == NULL) {
            goto fail;
        }
        PyList_SET_ITEM(out, i, payload);
    }
    PyMem_Free(buf);
    PyMem_Free(text);
    EVP_CIPHER_CTX_free(ctx);
    return out;
fail:
    if (buf != NULL) {
        OPENSSL_cleanse(buf, buf_cap);
    }
    PyMem_Free(buf);
    PyMem_Free(text);
    EVP_CIPHER_CTX_free(ctx);
    Py_DECREF(out);
    return NULL;
}

/* ---- sealed text values ------------------------------------------------------------------ */

PyDoc_STRVAR(sealed_texts_doc,
"sealed_texts(subjects, key_ids, blobs, /) -> list[str]\n\n"
"``JX2:<subject>:<key id>:<base64(blob)>`` for each value (what batch_seal.sealed_text\n"
"makes of one).");

static PyObject *
sealed_texts(PyObject *self, PyObject *args)
{
    PyObject *subjects, *key_ids, *blobs;
    if (!PyArg_ParseTuple(args, "O!O!O!:sealed_texts", &PyList_Type, &subjects, &PyList_Type,
                          &key_ids, &PyList_Type, &blobs)) {
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(subjects);
    if (PyList_GET_SIZE(key_ids) != n || PyList_GET_SIZE(blobs) != n) {
        PyErr_SetString(PyExc_ValueError, "the lists of a batch must have the same length");
        return NULL;
    }
    PyObject *out = PyList_New(n);
    if (out == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t subject_n, blob_n;
        const char *subject;
        const unsigned char *blob;
        PyObject *item = PyList_GET_ITEM(subjects, i);
        if ((subject = utf8_of(item, "each subject", &subject_n)) == NULL
            || (blob = exact_bytes(PyList_GET_ITEM(blobs, i), -1, "each blob", &blob_n))
                   == NULL) {
            goto fail;
        }
        long long kid;
        if (value_name(item, PyList_GET_ITEM(key_ids, i), &kid) < 0) {
            goto fail;
        }
        if (subject_n > 1024 || blob_n > PY_SSIZE_T_MAX / 2) {
            PyErr_SetString(PyExc_ValueError, "a value is too large");
            goto fail;
        }
        char kid_text[24];
        int kid_n = decimal(kid, kid_text);
        PyObject *text = PyUnicode_New(4 + subject_n + 1 + kid_n + 1 + b64_len(blob_n), 127);
        if (text == NULL) {
            goto fail;
        }
        char *w = (char *)PyUnicode_DATA(text);
        memcpy(w, "JX2:", 4);
        w += 4;
        memcpy(w, subject, subject_n);
        w += subject_n;
        *w++ = ':';
        memcpy(w, kid_text, kid_n);
        w += kid_n;
        *w++ = ':';
        b64(blob, blob_n, w);
        PyList_SET_ITEM(out, i, text);
    }
    return out;
fail:
    Py_DECREF(out);
    return NULL;
}

/* ---- HMAC-SHA256 tokens ------------------------------------------------------------------ */

PyDoc_STRVAR(hmac_tokens_doc,
"hmac_tokens(key, messages, prefix, size, /) -> list[str]\n\n"
"``prefix`` + base64url (no padding) of the first ``size`` bytes of HMAC-SHA256(key,\n"
"message) for each message (RFC 2104; what junction.core.pseudonym makes).");

static PyObject *
hmac_tokens(PyObject *self, PyObject *args)
{
    Py_buffer key;
    PyObject *messages, *prefix;
    Py_ssize_t size;
    if (!PyArg_ParseTuple(args, "y*O!Un:hmac_tokens", &key, &PyList_Type, &messages, &prefix,
                          &size)) {
        return NULL;
    }
    PyObject *out = NULL;
    SHA256_CTX inner, outer, work;
    unsigned char pad[SHA256_BLOCK], mac[MAC_BYTES];
    const char *pre;
    Py_ssize_t pre_n;
    if (size < 1 || size > MAC_BYTES) {
        PyErr_SetString(PyExc_ValueError, "size must be 1 to 32 bytes");
        goto done;
    }
    if (!PyUnicode_IS_ASCII(prefix) || (pre = PyUnicode_AsUTF8AndSize(prefix, &pre_n)) == NULL
        || pre_n > 64) {
        PyErr_SetString(PyExc_ValueError, "the prefix must be short ASCII");
        goto done;
    }
    /* the pads' states, computed once: each message then costs its own blocks only */
    unsigned char k[SHA256_BLOCK];
    memset(k, 0, sizeof k);
    if (key.len > SHA256_BLOCK) {
        unsigned int kn = 0;
        if (EVP_Digest(key.buf, key.len, k, &kn, sha256, NULL) != 1) {
            OPENSSL_cleanse(k, sizeof k);
            openssl_error("hash the key");
            goto done;
        }
    }
    else {
        memcpy(k, key.buf, key.len);
    }
    int ok = 1;
    for (int i = 0; i < SHA256_BLOCK; i++) {
        pad[i] = k[i] ^ 0x36;
    }
    ok &= SHA256_Init(&inner) == 1 && SHA256_Update(&inner, pad, sizeof pad) == 1;
    for (int i = 0; i < SHA256_BLOCK; i++) {
        pad[i] = k[i] ^ 0x5c;
    }
    ok &= SHA256_Init(&outer) == 1 && SHA256_Update(&outer, pad, sizeof pad) == 1;
    OPENSSL_cleanse(k, sizeof k);
    OPENSSL_cleanse(pad, sizeof pad);
    if (!ok) {
        openssl_error("start the HMAC");
        goto done;
    }
    Py_ssize_t n = PyList_GET_SIZE(messages);
    out = PyList_New(n);
    if (out == NULL) {
        goto done;
    }
    char token[64 + (MAC_BYTES + 2) / 3 * 4 + 1];
    memcpy(token, pre, pre_n);
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t msg_n;
        const unsigned char *msg = exact_bytes(PyList_GET_ITEM(messages, i), -1, "each message",
                                               &msg_n);
        if (msg == NULL) {
            Py_CLEAR(out);
            goto done;
        }
        work = inner; /* a plain struct: the pad's state copied */
        if (SHA256_Update(&work, msg, (size_t)msg_n) != 1 || SHA256_Final(mac, &work) != 1) {
            Py_CLEAR(out);
            openssl_error("compute an HMAC");
            goto done;
        }
        work = outer;
        if (SHA256_Update(&work, mac, MAC_BYTES) != 1 || SHA256_Final(mac, &work) != 1) {
            Py_CLEAR(out);
            openssl_error("compute an HMAC");
            goto done;
        }
        /* base64url without padding: the standard alphabet, then - for + and _ for / */
        Py_ssize_t w = b64(mac, size, token + pre_n);
        while (w > 0 && token[pre_n + w - 1] == '=') {
            w--;
        }
        for (Py_ssize_t j = pre_n; j < pre_n + w; j++) {
            if (token[j] == '+') {
                token[j] = '-';
            }
            else if (token[j] == '/') {
                token[j] = '_';
            }
        }
        PyObject *s = PyUnicode_New(pre_n + w, 127);
        if (s == NULL) {
            Py_CLEAR(out);
            goto done;
        }
        memcpy(PyUnicode_DATA(s), token, pre_n + w);
        PyList_SET_ITEM(out, i, s);
    }
done:
    OPENSSL_cleanse(mac, sizeof mac);
    OPENSSL_cleanse(&inner, sizeof inner); /* the key's pad states */
    OPENSSL_cleanse(&outer, sizeof outer);
    OPENSSL_cleanse(&work, sizeof work);
    PyBuffer_Release(&key);
    return out;
}

/* ---- module ------------------------------------------------------------------------------ */

static PyMethodDef methods[] = {
    {"encrypt_many", encrypt_many, METH_VARARGS, encrypt_many_doc},
    {"seal_payloads", seal_payloads, METH_VARARGS, seal_payloads_doc},
    {"hmac_tokens", hmac_tokens, METH_VARARGS, hmac_tokens_doc},
    {"sealed_texts", sealed_texts, METH_VARARGS, sealed_texts_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_sealer",
    "AES-256-GCM and HMAC-SHA256 over a batch in one call (OpenSSL EVP; ADR-0025).", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__sealer(void)
{
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
    gcm = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
    sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
#else
    gcm = EVP_aes_256_gcm();
    sha256 = EVP_sha256();
#endif
    if (gcm == NULL || sha256 == NULL) {
        PyErr_SetString(PyExc_ImportError, "OpenSSL has no AES-256-GCM or SHA-256");
        return NULL;
    }
    b64_init();
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) {
        return NULL;
    }
    if (PyModule_AddStringConstant(m, "OPENSSL_VERSION", OpenSSL_version(OPENSSL_VERSION)) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
