;;; The reference implementation the Guix tests compare storefs with: Guix's
;;; own cryptography (libgcrypt through guile-gcrypt), driven the way
;;; `guix archive --generate-key`, `guix publish` and `guix substitute` drive
;;; it.  Written for these tests from Guix's documented behaviour.
;;;
;;;   guile reference.scm genkey DIR
;;;     write DIR/signing-key.pub and DIR/signing-key.sec
;;;   guile reference.scm sign SECRET PUBLIC BODY HOST
;;;     print BODY followed by its "Signature: 1;HOST;…" line
;;;   guile reference.scm verify ACL NARINFO
;;;     print the signature status of NARINFO against ACL (exit 0 only
;;;     when it is valid-signature)

(use-modules (gcrypt pk-crypto)
             (gcrypt hash)
             (gcrypt base64)
             (rnrs bytevectors)
             (rnrs io ports)
             (ice-9 match))

(define (slurp file)
  (call-with-input-file file get-string-all))

(define (sexp-file file)
  (string->canonical-sexp (slurp file)))

(define (spit file text)
  (call-with-output-file file (lambda (port) (display text port))))

(define (generate dir)
  (let* ((pair (generate-key
                (string->canonical-sexp
                 "(genkey (ecdsa (curve Ed25519) (flags rfc6979)))")))
         (public (find-sexp-token pair 'public-key))
         (secret (find-sexp-token pair 'private-key)))
    (spit (string-append dir "/signing-key.pub") (canonical-sexp->string public))
    (spit (string-append dir "/signing-key.sec") (canonical-sexp->string secret))))

(define (signature-of text secret public)
  ;; The SHA-256 of TEXT in a data sexp for the key's type, signed, and
  ;; wrapped with the data and the signer's key.
  (let* ((data (bytevector->hash-data (sha256 (string->utf8 text))
                                      #:key-type (key-type public)))
         (sig  (sign data secret)))
    (string->canonical-sexp
     (string-append "(signature "
                    (canonical-sexp->string data) " "
                    (canonical-sexp->string sig) " "
                    (canonical-sexp->string public) ")"))))

(define (sign-body secret-file public-file body-file host)
  (let* ((body (slurp body-file))
         (sig  (signature-of body (sexp-file secret-file) (sexp-file public-file))))
    (display body)
    (display "Signature: 1;")
    (display host)
    (display ";")
    (display (base64-encode (string->utf8 (canonical-sexp->string sig))))
    (newline)))

(define (acl-keys acl)
  (match (canonical-sexp->sexp acl)
    (('acl ('entry keys ('tag ('guix 'import))) ...) keys)
    (_ (error "invalid access-control list"))))

(define (status narinfo-text acl)
  (let ((index (string-contains narinfo-text "Signature:")))
    (if (not index)
        'unsigned
        (let* ((signed (substring narinfo-text 0 index))
               (line   (substring narinfo-text index))
               (value  (string-trim-both
                        (substring line (string-length "Signature:")
                                   (or (string-index line #\newline)
                                       (string-length line)))))
               (parts  (string-split value #\;)))
          (match parts
            (("1" host b64)
             (let ((sig (false-if-exception
                         (string->canonical-sexp
                          (utf8->string (base64-decode b64))))))
               (if (not sig)
                   'corrupt-signature
                   (let ((subject (find-sexp-token sig 'public-key))
                         (data    (find-sexp-token sig 'data))
                         (value   (find-sexp-token sig 'sig-val)))
                     (cond ((not (and subject data value)) 'corrupt-signature)
                           ((not (member (canonical-sexp->sexp subject)
                                         (acl-keys acl)))
                            'unauthorized-key)
                           ((not (equal? (hash-data->bytevector data)
                                         (sha256 (string->utf8 signed))))
                            'hash-mismatch)
                           ((verify value data subject) 'valid-signature)
                           (else 'invalid-signature))))))
            ((version _ _) 'unsupported-version)
            (_ 'corrupt-signature))))))

(match (cdr (command-line))
  (("genkey" dir) (generate dir))
  (("sign" secret public body host) (sign-body secret public body host))
  (("verify" acl narinfo)
   (let ((s (status (slurp narinfo) (sexp-file acl))))
     (display s)
     (newline)
     (exit (if (eq? s 'valid-signature) 0 1))))
  (_ (display "usage: reference.scm genkey|sign|verify …\n" (current-error-port))
     (exit 2)))
